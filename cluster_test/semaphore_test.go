package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
)

// TestSemaphoreNemesis: nine workers on three nodes take permits of one
// semaphore (limit 2), read leases and write leases of one read-write lock
// (odd workers with TTL leases, even ones with session leases), each held
// a moment and released, while the election scenario's nemesis splits the
// cluster 1-vs-2 (every other split isolating a holder's node for longer
// than a session TTL, the holder holding on meanwhile) and kills the Raft
// leader (and restarts it), at least twice each. The holders' history is
// checked with history.CheckGrants (README.md, "Semaphores and read-write
// locks"): never more than 2 permits live, never two on one slot, never a
// read and a write or two writes live at once, tokens distinct and a
// write's token above every earlier grant's. After the final heal a
// permit, a read and a write through a follower must each be granted
// within 20 s.
func TestSemaphoreNemesis(t *testing.T) {
	t.Parallel()
	seed := nemesisSeed(t)
	logs := newNodeLog(t)
	c := newCluster(t, 3, logs.edit)
	c.net.seed(seed)
	c.WaitProtocol(5)
	rng := newRand(seed)
	sl := newSemLoad(c)
	keepOnFailure(t, "grants", "history.CheckGrants", func() any { return sl.rec.History() })
	stop := sl.start(9, seed)
	t.Cleanup(stop)

	nem := &electNemesis{t: t, c: c, load: sl, rng: rng}
	end := time.Now().Add(soak(t))
	for step := 0; step < 4 || time.Now().Before(end); step++ {
		// The nemesis's pace, not a wait for state: leases change meanwhile.
		sleep(t.Context(), time.Duration(500+rng.IntN(1000))*time.Millisecond)
		if step%2 == 0 {
			nem.split()
		} else {
			nem.kill()
		}
	}
	c.net.heal()
	stop()
	sl.settle(t)

	h := sl.rec.History()
	res := history.CheckGrants(h, 0)
	granted, unknown := map[history.Mode]int{}, 0
	for _, g := range h.Grants {
		switch g.Outcome {
		case history.OK:
			granted[g.Mode]++
		case history.Unknown, history.Pending:
			unknown++
		}
	}
	t.Logf("%d kills, %d partitions (%d of a holder's node); %d acquires: %d permits, %d reads, %d writes granted, %d without an answer",
		nem.kills, nem.splits, nem.holderSplits, len(h.Grants), granted[history.PermitMode], granted[history.ReadMode], granted[history.WriteMode], unknown)
	for _, m := range []history.Mode{history.PermitMode, history.ReadMode, history.WriteMode} {
		assert.Greater(t, granted[m], 1, "%s leases granted besides the probe", m)
	}
	assert.True(t, res.OK(), "grant history: %s", res)
}

// settle checks liveness once the nemesis and the workers stopped: a
// permit, a read and a write through a follower are each granted within
// 20 s (recorded, so the checks cover them), and released. A failure fails
// t without stopping it: the history is checked all the same.
func (sl *semLoad) settle(t *testing.T) {
	t.Helper()
	at := (sl.c.Leader() + 1) % sl.c.Size()
	for _, mode := range []history.Mode{history.PermitMode, history.ReadMode, history.WriteMode} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		start := time.Now()
		l, ok := sl.c.lockerOf(ctx, at)
		if !assert.True(t, ok, "a Locker on n%d within 20 s after the heal", at+1) {
			cancel()
			return
		}
		held, err := sl.acquire(ctx, 100, l, mode)
		cancel()
		if assert.NoError(t, err, "liveness: a %s through n%d granted within 20 s after the heal", mode, at+1) {
			t.Logf("after the heal a %s through n%d was granted in %v (token %d)", mode, at+1, time.Since(start).Round(time.Millisecond), held.Lease().Token())
			assert.True(t, held.Look(), "the probe's %s is held", mode)
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			assert.NoError(t, held.Release(rctx))
			rcancel()
		}
		_ = l.Close()
	}
}
