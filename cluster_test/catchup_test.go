package clustertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/node"
)

// smallLog makes nodes snapshot and truncate their log often, so that a
// follower cut off for a second or two falls behind the log and has to be
// sent a snapshot.
func smallLog(cfg *node.Config) {
	cfg.SnapshotThreshold = 64
	cfg.SnapshotInterval = 50 * time.Millisecond
	cfg.TrailingLogs = 16
}

// TestLaggingFollowerSnapshot: sixteen workers contend on three nodes whose
// logs are truncated every few dozen entries. A seeded nemesis cuts a
// follower off for 1.5-3 s, long enough for the leader to compact past it,
// then heals; the follower must catch up by installing a snapshot (its
// SnapshotRestores grows) while its own workers keep going, and the history
// must stay clean: a snapshot install ends or grants local leases and
// waiters through reconcile, not through events.
func TestLaggingFollowerSnapshot(t *testing.T) {
	t.Parallel()
	s := startScenario(t, 3, 16, []string{"a", "b", "c"}, nil, smallLog)
	rng, c := s.rng, s.c

	cuts, installs := 0, uint64(0)
	s.paced(t, 500*time.Millisecond, time.Second, func() {
		li := c.Leader()
		f := (li + 1 + rng.IntN(2)) % 3
		before := c.Node(f).Stats()
		c.net.Isolate(f)
		cuts++
		sleep(t.Context(), time.Duration(1500+rng.IntN(1500))*time.Millisecond) // the cut lasts: the leader compacts past f
		c.net.heal()
		caught := c.WaitCaughtUp(f, 30*time.Second)
		got := caught.SnapshotRestores - before.SnapshotRestores
		installs += got
		t.Logf("cut n%d at applied %d; healed, caught up to %d with %d snapshot installs", f+1, before.AppliedIndex, caught.AppliedIndex, got)
	})
	assert.NotZero(t, installs, "no follower caught up from a snapshot: the scenario did not test what it is for")
	s.finish(t, "the last heal", fmt.Sprintf("cuts %d, snapshot installs %d", cuts, installs))
}
