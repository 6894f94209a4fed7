package node_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
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

// TestCluster_ShutdownLeaderEndedCtx (issue 13): Shutdown of the leader of
// a healthy cluster with a ctx that has already ended returns ctx's error
// without waiting (no session close, no leadership transfer), ends its
// leases locally, logs at Warn that the sessions are left to expire, and
// the survivors elect a leader and pass its name on once its session has
// expired.
func TestCluster_ShutdownLeaderEndedCtx(t *testing.T) {
	rec := newLogRecorder()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Edit: func(i int, cfg *node.Config) {
		cfg.SessionTTL = time.Second
		cfg.Logger = slog.New(rec).With("node", cfg.ID)
	}})
	ctx := clusterCtx(t)
	li := c.Leader()
	lease, err := c.Node(li).Acquire(ctx, "leader-stops")
	require.NoError(t, err)

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(li, func(n *node.Node) error { return n.Shutdown(ended) }) }()
	select {
	case err = <-stopped:
	case <-time.After(30 * time.Second): // a liveness bound: it should be back at once
		t.Fatal("Shutdown of the leader with an ended ctx did not return")
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "sessions not closed in the store")
	assert.ErrorIs(t, lease.Err(), lock.ErrReleased, "the local lease ended")
	warned := false
	for _, l := range rec.lines(slog.LevelWarn) {
		warned = warned || (l.msg == "stopping without closing every session in the store" && l.attrs["node"] == c.ID(li))
	}
	assert.True(t, warned, "the stopping leader says its sessions are left to expire")

	survivor := (li + 1) % c.Size()
	l, err := c.NewLocker(ctx, survivor)
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()
	next, err := l.Acquire(ctx, "leader-stops")
	require.NoError(t, err, "the name passes on once the stopped leader's session expired")
	assert.Greater(t, next.Token(), lease.Token())
	require.NoError(t, next.Release(ctx))
}
