package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_ShutdownClosesSessions (issue 13): a graceful Shutdown with
// time to spare closes the node's sessions in the store, so a lease held
// through it passes to the waiter in that same entry, not a session TTL
// later.
func TestCluster_ShutdownClosesSessions(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	f := c.Follower()
	holder, err := c.Node(f).Acquire(ctx, "shutdown-job")
	require.NoError(t, err)
	other := (f + 1) % c.Size()
	waiter, err := c.NewLocker(ctx, other)
	require.NoError(t, err)
	got := make(chan lock.Lease, 1)
	go func() {
		l, err := waiter.Acquire(ctx, "shutdown-job")
		assert.NoError(t, err, "the waiter's Acquire")
		got <- l
	}()
	require.Eventually(t, func() bool {
		info, err := c.Node(other).Inspect(ctx, "shutdown-job")
		return err == nil && info.Waiters == 1
	}, 20*time.Second, 5*time.Millisecond)

	require.NoError(t, c.Stop(f, func(n *node.Node) error { return n.Shutdown(ctx) }), "Shutdown with a quorum")
	assert.ErrorIs(t, holder.Err(), lock.ErrReleased, "the holder's lease when Shutdown returns")
	info, err := c.Node(other).Inspect(ctx, "shutdown-job")
	require.NoError(t, err)
	assert.True(t, info.Held, "the waiter holds the name as soon as Shutdown returned")
	assert.Greater(t, info.Token, holder.Token(), "the waiter holds the name as soon as Shutdown returned")
	require.NoError(t, (<-got).Release(ctx))
}

// TestCluster_ShutdownBoundedByCtx (issue 13): without a quorum, Shutdown
// stops when its ctx ends (the bound is the caller's, not a hidden 5 s),
// ends the local leases, and says that the sessions are left to expire.
func TestCluster_ShutdownBoundedByCtx(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	lease, err := c.Node(0).Acquire(ctx, "stranded")
	require.NoError(t, err)
	c.Kill(1)
	c.Kill(2)

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err = c.Stop(0, func(n *node.Node) error { return n.Shutdown(ended) })
	require.ErrorIs(t, err, context.Canceled, "Shutdown without a quorum, its ctx ended")
	assert.ErrorContains(t, err, "sessions not closed in the store")
	assert.ErrorIs(t, lease.Err(), lock.ErrReleased, "the local lease ended when Shutdown returned")
}
