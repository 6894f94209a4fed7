package zookeeper_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// testCancelledWaitLeavesNoNode (I4): a waiter whose ctx is cancelled or
// times out deletes its node before Acquire returns; Acquire calls whose ctx
// ends at any point (even during the create) leave nothing behind once the
// background cleanup has run.
func testCancelledWaitLeavesNoNode(t *testing.T, servers []string) {
	a := newLocker(t, servers, 4*time.Second)
	b := newLocker(t, servers, 4*time.Second)
	const name = "cancelled-wait"
	holder, err := a.Acquire(ctxFor(t, 10*time.Second), name)
	require.NoError(t, err)
	holderNode := zookeeper.LeasePath(holder)[len(zookeeper.Dir(a, name))+1:]

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Acquire(ctx, name)
		done <- err
	}()
	eventually(t, 10*time.Second, "the waiter is queued", func() bool { return len(children(t, a, name)) == 2 })
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, []string{holderNode}, children(t, a, name), "a cancelled waiter must delete its node before Acquire returns")

	_, err = b.Acquire(ctxFor(t, 50*time.Millisecond), name)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, []string{holderNode}, children(t, a, name), "a timed-out waiter must delete its node before Acquire returns")

	// Deadlines spread over the create, the listing and the wait.
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%8)*300*time.Microsecond)
			defer cancel()
			lease, err := b.Acquire(ctx, name, lock.WithOwner("racer"))
			assert.Nil(t, lease)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
	wg.Wait()
	eventually(t, 10*time.Second, "only the holder's node is left", func() bool {
		kids := children(t, a, name)
		return len(kids) == 1 && kids[0] == holderNode
	})
	eventually(t, 10*time.Second, "no orphans are left to delete", func() bool { return zookeeper.Orphans(b) == 0 })
	require.NoError(t, holder.Release(ctxFor(t, 10*time.Second)))
	assert.Empty(t, children(t, a, name))
}

// testEscapedNamesInTree: names with '/', '.', '..' and non-ASCII map to one
// directory each, directly under the root.
func testEscapedNamesInTree(t *testing.T, servers []string) {
	l := newLocker(t, servers, 4*time.Second)
	ctx := ctxFor(t, 10*time.Second)
	for _, name := range []string{"a/b", ".", "..", "../x", "ключ 🔒", "%41", "A"} {
		lease, err := l.Acquire(ctx, name)
		require.NoError(t, err, name)
		dir := zookeeper.Dir(l, name)
		assert.Equal(t, "/quorumlock-test", dir[:strings.LastIndexByte(dir, '/')], "%q must be one level under the root", name)
		ok, _, err := zookeeper.Conn(l).Exists(dir)
		require.NoError(t, err)
		assert.True(t, ok, "directory of %q", name)
		require.NoError(t, lease.Release(ctx))
	}
}

// testExistingConn: a Locker on a connection it did not make uses its
// session and leaves it open on Close.
func testExistingConn(t *testing.T, servers []string) {
	conn, _, err := zk.Connect(servers, 4*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	require.NoError(t, err)
	defer conn.Close()
	_, err = zookeeper.New(zookeeper.Config{Conn: conn})
	assert.ErrorIs(t, err, zookeeper.ErrInvalidConfig, "Conn without SessionTimeout")
	l, err := zookeeper.New(zookeeper.Config{Conn: conn, SessionTimeout: 4 * time.Second})
	require.NoError(t, err)
	ctx := ctxFor(t, 10*time.Second)
	lease, err := l.Acquire(ctx, "existing-conn", lock.WithOwner("me"))
	require.NoError(t, err)
	info, err := l.Inspect(ctx, "existing-conn")
	require.NoError(t, err)
	assertHeldBy(t, info, lease, "me", l)
	require.NoError(t, l.Close())
	assert.ErrorIs(t, lease.Err(), lock.ErrReleased)
	_, _, err = conn.Exists("/")
	assert.NoError(t, err, "the Conn must still work after the Locker's Close")
	kids, _, err := conn.Children(zookeeper.Dir(l, "existing-conn"))
	if !errors.Is(err, zk.ErrNoNode) {
		require.NoError(t, err)
		assert.Empty(t, kids, "Close must delete the Locker's nodes")
	}
}
