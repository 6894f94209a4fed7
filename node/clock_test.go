package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// clockTTL is the TTL of the leases TestCluster_ClockJumps grants.
const clockTTL = time.Second

// clockGrant is what the waiter of TestCluster_ClockJumps got.
type clockGrant struct {
	lease     lock.Lease
	err       error
	at        time.Time
	holderErr error // the holder's Err when the waiter was granted
}

// TestCluster_ClockJumps: the wall clock that stamps commands jumps an hour
// forward or back on the leader, between a TTL lease's grant and its
// refresh, and on the node that becomes leader after a crash. Expiry runs on
// the leader's monotonic timers, so no lease may end earlier than its TTL
// after the last refresh was sent (the documented bound: node/DESIGN.md,
// "Time"), the holder still learns first (I3), and Inspect's ExpiresIn
// stays within (0, TTL].
func TestCluster_ClockJumps(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(fmt.Sprintf("leader%+v", jump), func(t *testing.T) { testLeaderClockJump(ctx, t, c, jump) })
	}
	t.Run("new leader's clock ahead", func(t *testing.T) { testSuccessorClockAhead(ctx, t, c) })
}

// testLeaderClockJump: the leader's clock is off by jump at the grant and
// by -jump at the refresh.
func testLeaderClockJump(ctx context.Context, t *testing.T, c *testcluster.Cluster, jump time.Duration) {
	li := c.Leader()
	leader := c.Node(li)
	h, w := c.Node((li+1)%3), c.Node((li+2)%3)
	node.SetWallSkew(leader, jump)
	defer node.SetWallSkew(leader, 0)

	name := fmt.Sprintf("jump%+v", jump)
	held, _, got := holdWithWaiter(ctx, t, name, h, w)
	checkClockInspect(ctx, t, c, name, held.Token())
	// The refresh is stamped with the clock jumped back the other way.
	node.SetWallSkew(leader, -jump)
	sent := time.Now()
	require.NoError(t, held.Refresh(ctx))
	checkClockInspect(ctx, t, c, name, held.Token())

	g := <-got
	require.NoError(t, g.err)
	assert.GreaterOrEqual(t, g.at.Sub(sent), clockTTL, "expired earlier than the TTL after the last refresh was sent")
	assert.Error(t, g.holderErr, "I3: the holder's lease had ended when the waiter was granted")
	assert.Greater(t, g.lease.Token(), held.Token())
	require.NoError(t, g.lease.Release(ctx))
}

// testSuccessorClockAhead: the leader crashes while both survivors' clocks
// run an hour ahead.
func testSuccessorClockAhead(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	li := c.Leader()
	hi, wi := (li+1)%3, (li+2)%3
	held, asked, got := holdWithWaiter(ctx, t, "failover", c.Node(hi), c.Node(wi))
	// Both survivors' clocks run an hour ahead: a successor that trusted
	// the stamps would find the lease an hour overdue.
	node.SetWallSkew(c.Node(hi), time.Hour)
	node.SetWallSkew(c.Node(wi), time.Hour)
	killed := time.Now()
	require.NoError(t, c.Stop(li, (*node.Node).Abort))

	g := <-got
	require.NoError(t, g.err)
	assert.GreaterOrEqual(t, g.at.Sub(killed), clockTTL, "the new leader expired the lease before a full TTL from its election")
	assert.Error(t, g.holderErr, "I3")
	assert.Greater(t, g.lease.Token(), held.Token())
	t.Logf("grant asked -> waiter granted after failover: %v (TTL %v)", g.at.Sub(asked).Round(time.Millisecond), clockTTL)
	require.NoError(t, g.lease.Release(ctx))
}

// holdWithWaiter grants name to a TTL lease on node h, queues node w's
// Acquire behind it and returns the lease, the time the grant was asked
// for and the waiter's result channel.
func holdWithWaiter(ctx context.Context, t *testing.T, name string, h, w *node.Node) (lock.Lease, time.Time, <-chan clockGrant) {
	t.Helper()
	asked := time.Now()
	held, err := h.Acquire(ctx, name, lock.WithTTL(clockTTL))
	require.NoError(t, err)
	got := make(chan clockGrant, 1)
	go func() {
		l, err := w.Acquire(ctx, name)
		got <- clockGrant{lease: l, err: err, at: time.Now(), holderErr: held.Err()}
	}()
	require.Eventually(t, func() bool {
		info, err := w.Inspect(ctx, name)
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 2*time.Millisecond)
	return held, asked, got
}

// checkClockInspect checks every node's Inspect of name: held with token,
// ExpiresIn within (0, TTL].
func checkClockInspect(ctx context.Context, t *testing.T, c *testcluster.Cluster, name string, token uint64) {
	t.Helper()
	for i := range c.Size() {
		info, err := c.Node(i).Inspect(ctx, name)
		require.NoError(t, err)
		assert.True(t, info.Held, "n%d", i+1)
		assert.Equal(t, token, info.Token, "n%d", i+1)
		assert.Positive(t, info.ExpiresIn, "n%d", i+1)
		assert.LessOrEqual(t, info.ExpiresIn, clockTTL, "n%d", i+1)
	}
}
