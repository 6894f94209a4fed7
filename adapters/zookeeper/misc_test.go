package zookeeper_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// children lists a lock name's claim nodes as l's session sees them after a
// sync.
func children(t testing.TB, l *zookeeper.Locker, name string) []string {
	t.Helper()
	dir := zookeeper.Dir(l, name)
	_, err := zookeeper.Conn(l).Sync(dir)
	if !errors.Is(err, zk.ErrNoNode) {
		require.NoError(t, err)
	}
	kids, _, err := zookeeper.Conn(l).Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	require.NoError(t, err)
	return kids
}

func newGUID(t testing.TB) string {
	var g [16]byte
	_, err := rand.Read(g[:])
	require.NoError(t, err)
	return hex.EncodeToString(g[:])
}

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

// testProtectedCreateRecovery covers the recovery half of protected
// creation: after a create whose reply was lost, the claim finds the node
// the server did create (by the GUID in its name), adopts it instead of
// creating a second one, and deletes duplicates. The lost reply itself is
// simulated: the test creates the node with the claim's GUID on the
// Locker's own session, and a hook runs Acquire from the recovery path on.
// It does not cut a real connection in the middle of a create.
func testProtectedCreateRecovery(t *testing.T, servers []string) {
	l := newLocker(t, servers, 4*time.Second)
	other := newLocker(t, servers, 4*time.Second)
	conn := zookeeper.Conn(l)
	ctx := ctxFor(t, 20*time.Second)

	for _, c := range []struct {
		kind  string
		opts  []lock.Option
		plant func(path string, data []byte) (string, error)
	}{
		{"session", nil, func(path string, data []byte) (string, error) {
			return conn.Create(path, data, zk.FlagEphemeralSequential, zk.WorldACL(zk.PermAll))
		}},
		{"TTL", []lock.Option{lock.WithTTL(time.Minute)}, func(path string, data []byte) (string, error) {
			return conn.CreateTTL(path, data, zk.FlagPersistentSequentialWithTTL, zk.WorldACL(zk.PermAll), time.Minute)
		}},
	} {
		name := "protected-" + c.kind
		// Make the directory exist, as it would after a real create.
		first, err := l.Acquire(ctx, name)
		require.NoError(t, err)
		require.NoError(t, first.Release(ctx))

		guid := newGUID(t)
		prefix := zookeeper.Dir(l, name) + "/" + zookeeper.ChildPrefix(guid)
		var ttlMillis int64
		if c.opts != nil {
			ttlMillis = time.Minute.Milliseconds()
		}
		data := zookeeper.EncodeData(ttlMillis, "planted")
		sent := time.Now()
		planted, err := c.plant(prefix, data)
		require.NoError(t, err)
		duplicate, err := c.plant(prefix, data) // a create applied twice
		require.NoError(t, err)

		lease, err := zookeeper.AcquireAfterLostCreate(ctx, l, name, guid, sent, c.opts...)
		require.NoError(t, err, "%s: Acquire after a lost create", c.kind)
		assert.Equal(t, planted, zookeeper.LeasePath(lease), "%s: the claim must adopt the node its lost create made", c.kind)
		info, err := other.Inspect(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, lease.Token(), info.Token, "%s: Inspect token", c.kind)
		eventually(t, 10*time.Second, c.kind+": the duplicate node is deleted", func() bool {
			kids := children(t, l, name)
			return len(kids) == 1 && !strings.HasSuffix(duplicate, kids[0])
		})
		require.NoError(t, lease.Release(ctx))
		assert.Empty(t, children(t, l, name), "%s: nothing left after Release", c.kind)
	}

	// No node with the GUID: the claim creates one (once).
	name := "protected-none"
	lease, err := zookeeper.AcquireAfterLostCreate(ctx, l, name, newGUID(t), time.Now())
	require.NoError(t, err)
	assert.Len(t, children(t, l, name), 1)
	require.NoError(t, lease.Release(ctx))
	assert.Empty(t, children(t, l, name))
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
	assert.Equal(t, lock.Info{Name: "existing-conn", Held: true, Token: lease.Token(), Owner: "me"}, info)
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

type discard struct{}

func (discard) Printf(string, ...any) {}

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
