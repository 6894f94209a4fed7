package testcluster

import (
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
)

// leaderTimeout bounds how long Leader waits for a leader.
const leaderTimeout = 10 * time.Second

// WaitMembers waits (up to 20 s) until every live node sees size members
// and a leader.
func (c *Cluster) WaitMembers(size int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, i := range c.Live() {
			n := c.Node(i)
			if n == nil {
				continue
			}
			m, err := n.Members()
			if err != nil || len(m) != size {
				return false
			}
			if id, _ := n.Leader(); id == "" {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
}

// LeaderNow returns the index of the live node that leads, as it sees
// itself (Stats.State "leader") and as a live node (itself included) names
// it; false if there is none right now.
func (c *Cluster) LeaderNow() (int, bool) {
	for _, i := range c.Live() {
		n := c.Node(i)
		if n == nil {
			continue
		}
		id, _ := n.Leader()
		li := c.Index(id)
		if li < 0 {
			continue
		}
		if ln := c.Node(li); ln != nil && ln.Stats().State == "leader" {
			return li, true
		}
	}
	return -1, false
}

// Leader polls LeaderNow for up to 10 s and fails the test if no node
// leads by then. Call it from the test goroutine.
func (c *Cluster) Leader() int {
	c.t.Helper()
	deadline := time.NewTimer(leaderTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if li, ok := c.LeaderNow(); ok {
			return li
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			c.t.Fatalf("no leader within %v", leaderTimeout)
		case <-c.t.Context().Done():
			c.t.Fatal("no leader: the test ended")
		}
	}
}

// Follower returns the index of a live node that does not lead.
func (c *Cluster) Follower() int {
	c.t.Helper()
	li := c.Leader()
	for _, i := range c.Live() {
		if i != li {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

// WaitCaughtUp waits up to timeout until node i has applied the leader's
// commit index as of now, and returns its stats then.
func (c *Cluster) WaitCaughtUp(i int, timeout time.Duration) node.Stats {
	c.t.Helper()
	target := c.Node(c.Leader()).Stats().CommitIndex
	var st node.Stats
	require.Eventually(c.t, func() bool {
		st = c.Node(i).Stats()
		return st.AppliedIndex >= target
	}, timeout, 10*time.Millisecond, "%s did not catch up to %d", c.ID(i), target)
	return st
}
