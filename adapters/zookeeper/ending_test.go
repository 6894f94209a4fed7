package zookeeper_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// The end of a lease while its store does not answer: Refresh and Release
// return once the lease has ended, whatever ctx they were given (R2, R4),
// and calls that run out of time against an unreachable store say
// ErrNoQuorum (R5).

// outcome waits up to within for the result of a call made in a goroutine.
func outcome(t *testing.T, ch <-chan error, within time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("%s did not return within %v", what, within)
	}
	panic("unreachable")
}

func goCall(f func() error) <-chan error {
	out := make(chan error, 1)
	go func() { out <- f() }()
	return out
}

// testRefreshAfterLocalEnd (R2, R4): a TTL lease's Refresh whose SetData
// the store does not answer before the lease's local deadline returns
// ErrNotHeld wrapping ErrExpired once Done closes — while the store still
// has not answered, with context.Background(). The SetData then reaches the
// server late and restarts the node's TTL there: the node goes to the
// orphans and is deleted, so the name does not stay held by nobody.
func testRefreshAfterLocalEnd(t *testing.T, servers []string) {
	l, g := newGatedLocker(t, servers, stableTimeout)
	w := newLocker(t, servers, stableTimeout)
	const name = "refresh-after-end"
	ctx := ctxFor(t, time.Minute)
	lease, err := l.Acquire(ctx, name, lock.WithTTL(time.Second))
	require.NoError(t, err)

	var once sync.Once
	release := g.holdSetData()
	t.Cleanup(func() { once.Do(release) }) // before the Locker's Close
	refreshed := goCall(func() error { return lease.Refresh(context.Background()) })
	waitDone(t, lease, 30*time.Second, "TTL lease whose Refresh is held")
	err = outcome(t, refreshed, 30*time.Second, "Refresh(context.Background()) of a lease that ended while it waited")
	assert.ErrorIs(t, err, lock.ErrNotHeld)
	assert.ErrorIs(t, err, lock.ErrExpired)
	assert.GreaterOrEqual(t, zookeeper.Orphans(l), 1, "the node is left for background deletion")

	once.Do(release) // the SetData reaches the server after the lease ended
	eventually(t, 30*time.Second, "the ended lease's node is deleted", func() bool { return len(children(t, w, name)) == 0 })
	assert.ErrorIs(t, lease.Release(ctx), lock.ErrNotHeld)
	assert.ErrorIs(t, lease.Refresh(ctx), lock.ErrNotHeld)
}

// testReleaseWhileUnreachable (R2, R4): with the server paused,
// Release(context.Background()) of a session lease and of a TTL lease
// returns once the lease would have ended on its own (its session or TTL
// deadline), saying ErrNotHeld and ErrNoQuorum; Release of a lease that
// ended by itself meanwhile answers ErrNotHeld with its cause at once and
// leaves its node for background deletion. Once the server runs again,
// nothing is left.
func testReleaseWhileUnreachable(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	l := newLocker(t, servers, faultTimeout)
	w := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	names := []string{"unreachable-session", "unreachable-ttl", "unreachable-expired"}
	session, err := l.Acquire(ctx, names[0])
	require.NoError(t, err)
	ttl, err := l.Acquire(ctx, names[1], lock.WithTTL(2*time.Second))
	require.NoError(t, err)
	expiring, err := l.Acquire(ctx, names[2], lock.WithTTL(time.Second))
	require.NoError(t, err)

	z.Pause()
	t.Cleanup(z.Resume)
	released := []<-chan error{
		goCall(func() error { return session.Release(context.Background()) }),
		goCall(func() error { return ttl.Release(context.Background()) }),
	}
	for i, ch := range released {
		err := outcome(t, ch, 30*time.Second, "Release(context.Background()) against a paused server")
		assert.ErrorIs(t, err, lock.ErrNotHeld, names[i])
		assert.ErrorIs(t, err, lock.ErrNoQuorum, names[i])
	}
	assert.ErrorIs(t, session.Err(), lock.ErrReleased)
	assert.ErrorIs(t, ttl.Err(), lock.ErrReleased)

	waitDone(t, expiring, 30*time.Second, "TTL lease while the server is paused")
	before := zookeeper.Orphans(l)
	err = outcome(t, goCall(func() error { return expiring.Release(context.Background()) }), 30*time.Second,
		"Release(context.Background()) of an expired lease")
	assert.ErrorIs(t, err, lock.ErrNotHeld)
	assert.ErrorIs(t, err, lock.ErrExpired)
	assert.Equal(t, before+1, zookeeper.Orphans(l), "the expired lease's node is left for background deletion")

	z.Resume()
	for _, name := range names {
		eventually(t, 30*time.Second, "nothing is left of "+name, func() bool { return len(children(t, w, name)) == 0 })
	}
	eventually(t, 30*time.Second, "the orphans are worked off", func() bool { return zookeeper.Orphans(l) == 0 })
}

// testNoQuorum (R5): calls that run out of time while the server is paused
// fail with ErrNoQuorum and ctx's error; a waiter queued behind a holder on
// a reachable server gets ctx's error alone.
func testNoQuorum(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	h := newLocker(t, servers, stableTimeout)
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const held = "noquorum-held"
	holder, err := h.Acquire(ctx, held)
	require.NoError(t, err)
	_, err = l.Acquire(ctxFor(t, time.Second), held)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a waiter on a reachable server")
	assert.NotErrorIs(t, err, lock.ErrNoQuorum, "a waiter on a reachable server")
	require.NoError(t, holder.Release(ctx))
	session, err := l.Acquire(ctx, "noquorum-session")
	require.NoError(t, err)
	ttl, err := l.Acquire(ctx, "noquorum-ttl", lock.WithTTL(time.Minute))
	require.NoError(t, err)

	z.Pause()
	t.Cleanup(z.Resume)
	short := func() context.Context { return ctxFor(t, 300*time.Millisecond) }
	calls := []struct {
		what string
		call func() error
	}{
		{"Inspect", func() error { _, err := l.Inspect(short(), held); return err }},
		{"Refresh of a session lease", func() error { return session.Refresh(short()) }},
		{"Refresh of a TTL lease", func() error { return ttl.Refresh(short()) }},
		{"Release of a TTL lease", func() error { return ttl.Release(short()) }},
		{"Release of a session lease", func() error { return session.Release(short()) }},
		{"Acquire", func() error { _, err := l.Acquire(short(), "noquorum-free"); return err }},
		{"TryAcquire", func() error { _, err := l.TryAcquire(short(), "noquorum-free"); return err }},
	}
	for _, c := range calls {
		err := c.call()
		assert.ErrorIs(t, err, lock.ErrNoQuorum, c.what)
		assert.ErrorIs(t, err, context.DeadlineExceeded, c.what)
		if err != nil {
			// The message keeps the last cause: a connection-level
			// failure, or how long no write was acknowledged.
			assert.Regexp(t, `no quorum: (last failure|no write acknowledged)`, err.Error(), c.what)
			t.Logf("%s: %v", c.what, err)
		}
	}
	z.Resume()
	lease, err := l.Acquire(ctx, "noquorum-free")
	require.NoError(t, err, "Acquire once the server runs again")
	require.NoError(t, lease.Release(ctx))
}
