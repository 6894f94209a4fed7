package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// Operating a lock across the nodes of a cluster (node/DESIGN.md,
// "Operating a lock"); the single-node cases are in ops_test.go.

// holderOf is Info.Holder of the leases of l, a Locker of package node.
func holderOf(l lock.Locker) string { return fmt.Sprintf("%016x", node.SessionOf(l)) }

// lockerAt is a new Locker on node i of c, closed at the end of the test.
func lockerAt(ctx context.Context, t *testing.T, c *testcluster.Cluster, i int) lock.Locker {
	t.Helper()
	l, err := c.NewLocker(ctx, i)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// waitWaiters waits until node i of c has applied n waiters on name.
func waitWaiters(t *testing.T, c *testcluster.Cluster, i int, name string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		info, err := c.Node(i).InspectLocal(name)
		return err == nil && info.Waiters == n
	}, 15*time.Second, 5*time.Millisecond)
}

// acquired is what a background Acquire got.
type acquired struct {
	lease lock.Lease
	err   error
	// heldErr is the Err of the lease it waited behind when it was granted
	// (nil if that one was still held then).
	heldErr error
}

// acquireBehind starts an Acquire of name by l that waits behind held.
func acquireBehind(ctx context.Context, l lock.Locker, name string, held lock.Lease, opts ...lock.Option) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		got, err := l.Acquire(ctx, name, opts...)
		a := acquired{lease: got, err: err}
		select {
		case <-held.Done():
			a.heldErr = held.Err()
		default:
		}
		ch <- a
	}()
	return ch
}

// TestCluster_InspectNamesNodesAndQueue: a holder on one node and waiters
// on the two others, inspected from a third Locker: Holder and Node of the
// holder and of each waiter in position order, through Inspect and List on
// any node.
func TestCluster_InspectNamesNodesAndQueue(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	holder := lockerAt(ctx, t, c, 0)
	first, second := lockerAt(ctx, t, c, 1), lockerAt(ctx, t, c, 2)
	held, err := holder.Acquire(ctx, "ops/who", lock.WithOwner("h"))
	require.NoError(t, err)
	got1 := acquireBehind(ctx, first, "ops/who", held, lock.WithOwner("w1"))
	waitWaiters(t, c, 2, "ops/who", 1)
	got2 := acquireBehind(ctx, second, "ops/who", held, lock.WithOwner("w2"))
	waitWaiters(t, c, 2, "ops/who", 2)

	for i := range c.Size() {
		info, err := c.Node(i).Inspect(ctx, "ops/who")
		require.NoError(t, err, "n%d", i+1)
		assert.Equal(t, holderOf(holder), info.Holder, "n%d", i+1)
		assert.Equal(t, c.ID(0), info.Node, "n%d", i+1)
		assert.Equal(t, lock.KindSession, info.Kind, "n%d", i+1)
		assert.Positive(t, info.Since, "n%d", i+1)
		require.Len(t, info.Queue, 2, "n%d", i+1)
		assert.Equal(t, lock.Waiter{Holder: holderOf(first), Node: c.ID(1), Owner: "w1", Waited: info.Queue[0].Waited}, info.Queue[0], "n%d", i+1)
		assert.Equal(t, lock.Waiter{Holder: holderOf(second), Node: c.ID(2), Owner: "w2", Waited: info.Queue[1].Waited}, info.Queue[1], "n%d", i+1)
		assert.Positive(t, info.Queue[1].Waited, "n%d", i+1)
		assert.GreaterOrEqual(t, info.Queue[0].Waited, info.Queue[1].Waited, "n%d", i+1)

		page, err := c.Node(i).List(ctx, "ops/")
		require.NoError(t, err, "n%d", i+1)
		require.Len(t, page.Locks, 1, "n%d", i+1)
		assert.Equal(t, info.Holder, page.Locks[0].Holder)
		assert.Equal(t, info.Node, page.Locks[0].Node)
		assert.Empty(t, page.Locks[0].Queue, "a page has no queues")
	}

	require.NoError(t, held.Release(ctx))
	a := <-got1
	require.NoError(t, a.err)
	require.NoError(t, a.lease.Release(ctx))
	b := <-got2
	require.NoError(t, b.err)
	require.NoError(t, b.lease.Release(ctx))
}

// TestCluster_RevokeAcrossNodes: a holder on one node, a waiter on a
// second, the revoke from the third. By the time the waiter's Acquire
// returns, the holder's Done is closed with ErrRevoked (I3), and the
// waiter's token is greater than the revoked one; Revoke returns nil.
func TestCluster_RevokeAcrossNodes(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	hi, wi := (li+1)%3, (li+2)%3
	holder, waiter, op := lockerAt(ctx, t, c, hi), lockerAt(ctx, t, c, wi), lockerAt(ctx, t, c, li)
	for name, opts := range map[string][]lock.Option{"revoke-session": nil, "revoke-ttl": {lock.WithTTL(time.Hour)}} {
		held, err := holder.Acquire(ctx, name, opts...)
		require.NoError(t, err)
		got := acquireBehind(ctx, waiter, name, held)
		waitWaiters(t, c, li, name, 1)

		require.NoError(t, op.(lock.Revoker).Revoke(ctx, name, held.Token()), name)
		a := <-got
		require.NoError(t, a.err, name)
		require.ErrorIs(t, a.heldErr, lock.ErrRevoked, "%s: I3: the holder's Done closed with ErrRevoked before the waiter was granted", name)
		assert.Greater(t, a.lease.Token(), held.Token(), name)
		assert.ErrorIs(t, held.Release(ctx), lock.ErrNotHeld, name)
		require.NoError(t, a.lease.Release(ctx), name)
	}
}

// TestCluster_RevokeCutOffHolder: the holder of a one-hour TTL lease is on
// a node cut off from the others, so it cannot hear the revoke nor let go.
// The store ends the lease a session TTL after the revoke (the grace, or
// the expiry of the holder's session, which ends a revoked lease, whichever
// commits first) and Revoke returns; the waiter is granted long before
// the hour. Healed, the holder's node learns its lease was revoked.
func TestCluster_RevokeCutOffHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut})
	li := c.Leader()
	hi, wi := (li+1)%3, (li+2)%3
	holder, waiter := lockerAt(ctx, t, c, hi), lockerAt(ctx, t, c, wi)
	held, err := holder.Acquire(ctx, "cut-off", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	got := acquireBehind(ctx, waiter, "cut-off", held)
	waitWaiters(t, c, wi, "cut-off", 1)

	cut.Isolate(hi)
	require.NoError(t, c.Node(wi).Revoke(ctx, "cut-off", held.Token()))
	a := <-got
	require.NoError(t, a.err)
	assert.Greater(t, a.lease.Token(), held.Token())
	assert.NoError(t, held.Err(), "cut off, the TTL holder has not heard (the exception lock/DESIGN.md documents)")

	cut.Reconnect(hi)
	select {
	case <-held.Done():
		assert.ErrorIs(t, held.Err(), lock.ErrRevoked)
	case <-ctx.Done():
		t.Fatal("healed, the holder's node never learned that its lease was revoked")
	}
	require.NoError(t, a.lease.Release(ctx))
}

// TestCluster_RevokeWithAVoterDown: the leader crashed; the new leader has
// never heard the dead voter announce a protocol, yet Revoke goes through:
// the cluster has committed level 2, so no voter of an older build can
// serve its log. Without that rule the dead voter counted as protocol 1
// and every Revoke failed with ErrUnsupported until it was removed.
func TestCluster_RevokeWithAVoterDown(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	dead := c.Leader()
	c.Kill(dead)
	li := c.Leader()
	hi := 3 - dead - li
	holder, op := lockerAt(ctx, t, c, hi), lockerAt(ctx, t, c, li)
	held, err := holder.Acquire(ctx, "down")
	require.NoError(t, err)
	require.NoError(t, op.(lock.Revoker).Revoke(ctx, "down", held.Token()))
	assert.ErrorIs(t, held.Err(), lock.ErrRevoked)
}

// TestCluster_AdoptAfterCrash: the node whose Locker held a TTL lease
// crashed; a Locker on another node adopts the lease by its token: same
// token, its own Holder and Node, and it releases it.
func TestCluster_AdoptAfterCrash(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	hi, ai := (li+1)%3, (li+2)%3
	holder := lockerAt(ctx, t, c, hi)
	old, err := holder.Acquire(ctx, "crashed", lock.WithTTL(time.Hour), lock.WithOwner("batch"))
	require.NoError(t, err)
	c.Kill(hi)

	adopter := lockerAt(ctx, t, c, ai)
	l, err := adopter.(lock.Adopter).Adopt(ctx, "crashed", old.Token())
	require.NoError(t, err)
	assert.Equal(t, old.Token(), l.Token())
	info, err := c.Node(li).Inspect(ctx, "crashed")
	require.NoError(t, err)
	assert.Equal(t, holderOf(adopter), info.Holder)
	assert.Equal(t, c.ID(ai), info.Node)
	assert.Equal(t, "batch", info.Owner)
	require.NoError(t, l.Refresh(ctx))
	require.NoError(t, l.Release(ctx))

	session, err := adopter.Acquire(ctx, "session")
	require.NoError(t, err)
	_, err = c.Node(li).Adopt(ctx, "session", session.Token())
	assert.ErrorIs(t, err, lock.ErrNotHeld, "a session lease cannot be adopted")
	assert.NoError(t, session.Err())
}

// TestCluster_AdoptFromALiveHolder: the previous holder, alive on another
// node, sees ErrAdopted; its Release leaves the adopter's lease alone.
func TestCluster_AdoptFromALiveHolder(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, false)
	li := c.Leader()
	hi, ai := (li+1)%3, (li+2)%3
	prev := lockerAt(ctx, t, c, hi)
	old, err := prev.Acquire(ctx, "alive", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	l, err := c.Node(ai).Adopt(ctx, "alive", old.Token())
	require.NoError(t, err)
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the previous holder never heard of the adoption")
	}
	require.ErrorIs(t, old.Err(), lock.ErrAdopted)
	err = old.Release(ctx)
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.True(t, errors.Is(err, lock.ErrAdopted), "the end's cause: %v", err)
	info, err := c.Node(hi).Inspect(ctx, "alive")
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, holderOf(c.Node(ai)), info.Holder)
	require.NoError(t, l.Release(ctx))
}

// TestCluster_RevokeAndAdoptSeenThroughSnapshot: the holder's node was cut
// off while one of its TTL leases was adopted elsewhere and another
// revoked, and catches up from a snapshot, so no Revoking or Adopted event
// fires there. Reconciling with the installed state, it ends the adopted
// lease with ErrAdopted (not releasing it: it is the adopter's) and the
// revoked one with ErrRevoked, releasing it, which ends the revoke long
// before its grace (a session TTL of a minute).
func TestCluster_RevokeAndAdoptSeenThroughSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = time.Minute
	}})
	li := c.Leader()
	hi, oi := (li+1)%3, (li+2)%3
	holder := lockerAt(ctx, t, c, hi)
	adoptedAway, err := holder.Acquire(ctx, "snap/adopted", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	revoked, err := holder.Acquire(ctx, "snap/revoked", lock.WithTTL(time.Hour))
	require.NoError(t, err)

	cut.Isolate(hi)
	adopted, err := c.Node(oi).Adopt(ctx, "snap/adopted", adoptedAway.Token())
	require.NoError(t, err)
	revokeDone := make(chan error, 1)
	go func() { revokeDone <- c.Node(oi).Revoke(ctx, "snap/revoked", revoked.Token()) }()
	require.Eventually(t, func() bool {
		return len(node.RevokedNames(c.Node(li))) == 1
	}, 15*time.Second, 5*time.Millisecond, "the revoke commits")
	r := node.RaftOf(c.Node(li))
	require.NoError(t, r.Snapshot().Error())
	reloadable := r.ReloadableConfig()
	reloadable.TrailingLogs = 1
	require.NoError(t, r.ReloadConfig(reloadable))
	for i := range 3 { // entries past the snapshot, then a snapshot that drops them
		l, err := c.Node(li).Acquire(ctx, fmt.Sprintf("snap/fill-%d", i))
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	}
	require.NoError(t, r.Snapshot().Error())
	require.NoError(t, adoptedAway.Err(), "cut off, the holder has heard nothing yet")
	require.NoError(t, revoked.Err())

	cut.Reconnect(hi)
	require.NoError(t, <-revokeDone, "the holder's node released the revoked lease")
	require.NotZero(t, c.Node(hi).Stats().SnapshotRestores, "the holder's node caught up from a snapshot")
	require.ErrorIs(t, revoked.Err(), lock.ErrRevoked)
	select {
	case <-adoptedAway.Done():
	case <-ctx.Done():
		t.Fatal("the holder's node never learned that its lease was adopted")
	}
	require.ErrorIs(t, adoptedAway.Err(), lock.ErrAdopted)
	require.ErrorIs(t, adoptedAway.Release(ctx), lock.ErrNotHeld)
	info, err := c.Node(hi).Inspect(ctx, "snap/adopted")
	require.NoError(t, err)
	assert.Equal(t, adoptedAway.Token(), info.Token, "the adopter still holds it")
	require.NoError(t, adopted.Release(ctx))
}
