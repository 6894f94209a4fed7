package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// Cluster tests of a node left without a quorum: its calls end, and say
// why.

// TestCluster_ReleaseReturnsWhenLeaseEndsWithoutQuorum (issue 11, item 4):
// `defer lease.Release(context.Background())` on a node that lost its
// quorum returns once the lease has ended (its session's deadline passed),
// with ErrNotHeld wrapping the end cause; so does a Refresh. Neither waits
// for a quorum that is not coming.
func TestCluster_ReleaseReturnsWhenLeaseEndsWithoutQuorum(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	hi := (li + 1) % 3
	n := c.Node(hi)
	released, err := n.Acquire(ctx, "released")
	require.NoError(t, err)
	refreshed, err := n.Acquire(ctx, "refreshed")
	require.NoError(t, err)

	c.Kill(li)
	c.Kill((li + 2) % 3)
	calls := map[string]chan error{"Release": make(chan error, 1), "Refresh": make(chan error, 1)}
	go func() { calls["Release"] <- released.Release(context.Background()) }()
	go func() { calls["Refresh"] <- refreshed.Refresh(context.Background()) }()

	for _, l := range []lock.Lease{released, refreshed} {
		select {
		case <-l.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("lease %q still held 15 s after the quorum was lost (session TTL 2 s)", l.Name())
		}
	}
	for what, ch := range calls {
		select {
		case err := <-ch:
			require.ErrorIs(t, err, lock.ErrNotHeld, what)
			require.ErrorIs(t, err, lock.ErrLost, what+" wraps the end cause")
		case <-time.After(15 * time.Second):
			t.Fatalf("%s(context.Background()) still blocked 15 s after its lease ended", what)
		}
	}
	// Asked again once ended, both answer at once, whatever ctx.
	require.ErrorIs(t, released.Release(context.Background()), lock.ErrNotHeld)
	require.ErrorIs(t, refreshed.Refresh(context.Background()), lock.ErrNotHeld)
}

// TestCluster_NoQuorumAfterSessionLost (issue 11, item 5): once the
// session expired on a node without a quorum, every call that runs out of
// ctx says so the same way: lock.ErrNoQuorum and ctx's error.
func TestCluster_NoQuorumAfterSessionLost(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	hi := (li + 1) % 3
	n := c.Node(hi)
	held, err := n.Acquire(ctx, "held")
	require.NoError(t, err)
	ttl, err := n.Acquire(ctx, "ttl", lock.WithTTL(time.Minute)) // outlives the session
	require.NoError(t, err)

	c.Kill(li)
	c.Kill((li + 2) % 3)
	select {
	case <-held.Done(): // the session's deadline passed: the client waits for a new one
	case <-time.After(15 * time.Second):
		t.Fatal("session lease still held 15 s after the quorum was lost (session TTL 2 s)")
	}
	calls := []struct {
		what string
		call func(context.Context) error
	}{
		{"TryAcquire", func(ctx context.Context) error { _, err := n.TryAcquire(ctx, "free"); return err }},
		{"Acquire", func(ctx context.Context) error { _, err := n.Acquire(ctx, "free"); return err }},
		{"Inspect", func(ctx context.Context) error { _, err := n.Inspect(ctx, "free"); return err }},
		{"NewLocker", func(ctx context.Context) error { _, err := n.NewLocker(ctx); return err }},
		{"Refresh", ttl.Refresh},
		{"Release", ttl.Release},
	}
	for _, c := range calls {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := c.call(cctx)
		cancel()
		assert.ErrorIs(t, err, lock.ErrNoQuorum, "%s: %v", c.what, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "%s: %v", c.what, err)
	}
	// The session lease has ended: that is the answer, whatever the store.
	assert.ErrorIs(t, held.Refresh(ctx), lock.ErrNotHeld)
}

// TestCluster_ExpiryNeverForwarded (issue 11, item 9): an expiry decided on
// a node that no longer leads is dropped, not forwarded to the leader,
// which may have acknowledged keep-alives for that session since.
func TestCluster_ExpiryNeverForwarded(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	fi := (li + 1) % 3
	held, err := c.Node(fi).Acquire(ctx, "kept")
	require.NoError(t, err)
	require.NoError(t, node.ExpireSession(c.Node(fi), node.SessionOf(c.Node(fi))))
	info, err := c.Node(li).Inspect(ctx, "kept")
	require.NoError(t, err)
	assert.True(t, info.Held, "an expiry from a follower must not reach the leader")
	assert.Equal(t, held.Token(), info.Token)
	assert.NoError(t, held.Err())
}

// TestCluster_QueuedAcquireEndingInOutageIsNoQuorum (R5): an Acquire queued
// behind a holder, on a follower that is then cut off, whose ctx ends
// during the outage, answers ErrNoQuorum with ctx's error: its withdrawal
// could not reach the store. Queued while the store was reachable is not
// enough to call the store healthy when the call ends.
func TestCluster_QueuedAcquireEndingInOutageIsNoQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = 30 * time.Second // outlives the outage: the claim stays
	}})
	li := c.Leader()
	fi := (li + 1) % 3
	holder, err := c.NewLocker(ctx, li)
	require.NoError(t, err)
	h, err := holder.Acquire(ctx, "q")
	require.NoError(t, err)
	waiter, err := c.NewLocker(ctx, fi)
	require.NoError(t, err)

	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	res := make(chan error, 1)
	go func() {
		l, err := waiter.Acquire(actx, "q")
		if l != nil {
			_ = l.Release(ctx)
		}
		res <- err
	}()
	require.Eventually(t, func() bool { return node.QueuedClaims(waiter) == 1 }, 30*time.Second, 10*time.Millisecond)
	cut.Isolate(fi)
	acancel()
	err = <-res
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, lock.ErrNoQuorum)

	cut.Reconnect(fi)
	require.NoError(t, h.Release(ctx))
	require.NoError(t, waiter.Close())
	require.NoError(t, holder.Close())
}
