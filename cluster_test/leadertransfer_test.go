package clustertest

import (
	"fmt"
	"testing"
	"time"
)

// TestLeaderTransferUnderLoad: sixteen workers contend while a seeded
// nemesis closes the leader gracefully every 1-2 s (Close transfers
// leadership and releases that node's sessions) and restarts it. Checks:
// the history, no fenced write rejected, liveness; a graceful hand-over
// must not cost the other nodes' leases (their tokens keep their
// holders: checked by the history's held-after-end and fence checks).
func TestLeaderTransferUnderLoad(t *testing.T) {
	t.Parallel()
	s := startScenario(t, 3, 16, []string{"a", "b"}, nil)
	c := s.c

	transfers := 0
	s.paced(t, time.Second, time.Second, func() {
		li := c.Leader()
		start := time.Now()
		c.Close(li)
		next := c.Leader()
		t.Logf("closed leader n%d in %v; n%d leads", li+1, time.Since(start).Round(time.Millisecond), next+1)
		transfers++
		c.Restart(li)
	})
	s.finish(t, "the nemesis stopped", fmt.Sprintf("transfers %d", transfers))
}
