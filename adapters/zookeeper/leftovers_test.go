package zookeeper_test

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// testRequeueFreshGUID: a claim whose node was lost or given up queues
// again with a fresh GUID, so an ambiguous create after the requeue cannot
// adopt the old node (whose TTL on the server started long before the new
// create, so its holder's local deadline would come after the server's).
// The test plants the given-up node and runs the claim from the recovery
// path after a requeue: it must queue behind that node, not adopt it.
func testRequeueFreshGUID(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	w := newLocker(t, servers, stableTimeout)
	const name = "requeue-guid"
	ctx := ctxFor(t, time.Minute)
	guid := newGUID(t)
	// The given-up node of the claim's earlier life: create the directory
	// through a held and released lease, then plant the node.
	lease, err := w.Acquire(ctx, name)
	require.NoError(t, err)
	require.NoError(t, lease.Release(ctx))
	old, err := zookeeper.Conn(w).CreateTTL(zookeeper.Dir(w, name)+"/"+zookeeper.ChildPrefix(guid),
		zookeeper.ClaimData(l, time.Minute, ""), zk.FlagPersistentSequentialWithTTL, zk.WorldACL(zk.PermAll), time.Minute)
	require.NoError(t, err)

	type result struct {
		lease lock.Lease
		err   error
	}
	out := make(chan result, 1)
	go func() {
		lease, err := zookeeper.AcquireAfterRequeue(ctx, l, name, guid, lock.WithTTL(time.Minute))
		out <- result{lease, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(children(t, w, name)) != 2 {
		select {
		case r := <-out:
			require.NoError(t, r.err)
			t.Fatalf("the requeued claim was granted at once on node %s (the given-up node is %s)", zookeeper.LeasePath(r.lease), old)
		case <-time.After(10 * time.Millisecond):
		}
		require.False(t, time.Now().After(deadline), "the requeued claim did not queue behind the given-up node")
	}
	require.NoError(t, zookeeper.Conn(w).Delete(old, -1))
	r := <-out
	require.NoError(t, r.err)
	assert.NotEqual(t, old, zookeeper.LeasePath(r.lease))
	require.NoError(t, r.lease.Release(ctx))
	assert.Empty(t, children(t, w, name))
}

// testReleaseOfVanishedNode: Release of a lease whose node someone else
// deleted (an operator) says ErrNotHeld wrapping ErrLost, as the Redis
// adapter does when its key is gone; it does not pretend to have released.
func testReleaseOfVanishedNode(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	op := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	for _, k := range []struct {
		name string
		opts []lock.Option
	}{
		{"vanished-session", nil},
		{"vanished-ttl", []lock.Option{lock.WithTTL(time.Minute)}},
	} {
		lease, err := l.Acquire(ctx, k.name, k.opts...)
		require.NoError(t, err)
		require.NoError(t, zookeeper.Conn(op).Delete(zookeeper.LeasePath(lease), -1))
		err = lease.Release(ctx)
		assert.ErrorIs(t, err, lock.ErrNotHeld, k.name)
		assert.ErrorIs(t, err, lock.ErrLost, k.name)
	}
}

// testCancelledWaitsShareWatch: go-zookeeper cannot remove a watch, so
// every wait that sets one and gives up leaves it registered until the
// watched node changes. Waiters of one Locker share the watch on a
// predecessor: many cancelled waits behind one holder leave one watch, not
// one each (two if a wait's watch request was still unrecorded when the
// next wait looked: a matter of scheduling, so the bound allows it).
func testCancelledWaitsShareWatch(t *testing.T, servers []string) {
	h := newLocker(t, servers, stableTimeout)
	l := newLocker(t, servers, stableTimeout)
	const name, waits = "shared-watch", 20
	ctx := ctxFor(t, time.Minute)
	holder, err := h.Acquire(ctx, name)
	require.NoError(t, err)
	for range waits {
		wctx, cancel := context.WithCancel(ctx)
		done := goCall(func() error { _, err := l.Acquire(wctx, name); return err })
		eventually(t, 10*time.Second, "the waiter is queued", func() bool { return len(children(t, h, name)) == 2 })
		cancel()
		require.ErrorIs(t, outcome(t, done, 30*time.Second, "a cancelled Acquire"), context.Canceled)
	}
	assert.LessOrEqual(t, watchChannels(t, zookeeper.Conn(l)), 2, "watches left by %d cancelled waits", waits)
	require.NoError(t, holder.Release(ctx))
	assert.Empty(t, children(t, h, name))
}

// watchChannels counts the watches registered on conn. go-zookeeper has
// no API for it, so this reads its watcher table by reflection (tested
// with v1.0.4), under the table's own lock (an observer may be setting a
// watch meanwhile). The Sync before orders the read after every reply and
// event go-zookeeper's receive loop handled before it (the reply reaches
// us through a channel from that loop).
func watchChannels(t *testing.T, conn *zk.Conn) int {
	t.Helper()
	_, err := conn.Sync("/")
	require.NoError(t, err)
	c := reflect.ValueOf(conn).Elem()
	table, lockField := c.FieldByName("watchers"), c.FieldByName("watchersLock")
	require.True(t, table.IsValid() && table.Kind() == reflect.Map && lockField.IsValid() && lockField.Type() == reflect.TypeFor[sync.Mutex](),
		"go-zookeeper's Conn has no watcher table any more: update this test")
	mu := (*sync.Mutex)(unsafe.Pointer(lockField.UnsafeAddr()))
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for it := table.MapRange(); it.Next(); {
		n += it.Value().Len()
	}
	return n
}
