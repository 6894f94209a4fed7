package redis_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// granted is the outcome of an Acquire, with whether the lease it waited
// for had ended (its Done closed) when the Acquire returned.
type granted struct {
	lease      lock.Lease
	err        error
	holderDone bool
}

// goAcquireAfter starts l.Acquire(ctx, name) and reports, with its
// outcome, whether held's Done was closed when it returned.
func goAcquireAfter(ctx context.Context, l lock.Locker, name string, held lock.Lease) <-chan granted {
	out := make(chan granted, 1)
	go func() {
		lease, err := l.Acquire(ctx, name)
		out <- granted{lease, err, isClosed(held.Done())}
	}()
	return out
}

func awaitGranted(t *testing.T, out <-chan granted, what string) granted {
	t.Helper()
	select {
	case g := <-out:
		require.NoError(t, g.err, what)
		return g
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not granted after 30 s", what)
	}
	panic("unreachable")
}

// TestRevoke_WaiterGrantedAfterHolderDone (issue 13, item 3): Revoke of a
// session lease with a waiter queued: the holder's Done closes with
// ErrRevoked (also ErrLost) before the waiter is granted (I3), the holder's
// Locker logs it at Warn, the waiter's token is greater, and the revoked
// token can neither be refreshed, released nor revoked again.
func TestRevoke_WaiterGrantedAfterHolderDone(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	logs := &records{}
	a := newNodeLocker(t, srv.Addr(), "node-a", 2*time.Second, logs)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	op := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	name := "revoke-waiter"

	held, err := a.Acquire(ctx, name)
	require.NoError(t, err)
	holder := holderOf(t, op, name)
	out := goAcquireAfter(ctx, b, name, held)
	waitWaiters(t, op, name, 1)

	require.NoError(t, op.Revoke(ctx, name, held.Token()))
	info, err := op.Inspect(ctx, name)
	require.NoError(t, err)
	assert.False(t, info.Held && info.Token == held.Token(), "Revoke returned while the revoked lease was still there: %+v", info)

	g := awaitGranted(t, out, "the waiter behind the revoked lease")
	assert.True(t, g.holderDone, "the holder's Done must close before the waiter is granted (I3)")
	assert.Greater(t, g.lease.Token(), held.Token(), "the next grant is fenced above the revoked token")
	require.ErrorIs(t, held.Err(), lock.ErrRevoked)
	require.ErrorIs(t, held.Err(), lock.ErrLost)
	for what, err := range map[string]error{"Refresh": held.Refresh(ctx), "Release": held.Release(ctx)} {
		assert.ErrorIs(t, err, lock.ErrNotHeld, what)
		assert.ErrorIs(t, err, lock.ErrRevoked, what)
	}
	assert.ErrorIs(t, op.Revoke(ctx, name, held.Token()), lock.ErrNotHeld, "the revoked token again")

	attrs, ok := logs.find(slog.LevelWarn, "revoked")
	require.True(t, ok, "the holder's Locker logs the revoke at Warn")
	assert.Equal(t, name, attrs["name"])
	assert.Equal(t, held.Token(), attrs["token"])
	assert.Equal(t, holder, attrs["holder"])

	assert.Equal(t, g.lease.Token(), holderToken(t, op, name), "the waiter holds it")
	require.NoError(t, g.lease.Release(ctx))
}

func holderToken(t *testing.T, l lock.Locker, name string) uint64 {
	t.Helper()
	info, err := l.Inspect(testCtx(t), name)
	require.NoError(t, err)
	return info.Token
}

// TestRevoke_Refused: a token that does not hold the name is ErrNotHeld,
// token 0 and a bad name before any I/O.
func TestRevoke_Refused(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), time.Second)
	ctx := testCtx(t)
	held, err := l.Acquire(ctx, "revoke-refused")
	require.NoError(t, err)
	assert.ErrorIs(t, l.Revoke(ctx, "revoke-refused", held.Token()+1), lock.ErrNotHeld, "a wrong token")
	assert.ErrorIs(t, l.Revoke(ctx, "revoke-refused", 0), lock.ErrNotHeld, "token 0")
	assert.ErrorIs(t, l.Revoke(ctx, "never-held", 1), lock.ErrNotHeld, "a free name")
	assert.ErrorIs(t, l.Revoke(ctx, "", 1), lock.ErrInvalidName)
	assert.Nil(t, held.Err(), "a refused revoke leaves the lease alone")
	require.NoError(t, held.Refresh(ctx))
	require.NoError(t, held.Release(ctx))
}

// TestRevoke_HeardByRenewal: a holder whose Locker missed the revoke's
// message (pub/sub is at-most-once) learns of it from the refused answer
// of its next session renewal or TTL-lease check, ends the lease with
// ErrRevoked and lets go, so that Revoke returns; the TTL lease is not
// simply left to expire after the grace.
func TestRevoke_HeardByRenewal(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 3*time.Second) // renews and checks every second
	op := newLocker(t, srv.Addr(), 10*time.Second)
	ctx := testCtx(t)
	session, err := a.Acquire(ctx, "heard-session")
	require.NoError(t, err)
	ttl, err := a.Acquire(ctx, "heard-ttl", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	require.NoError(t, redis.Deafen(a))

	for _, held := range []lock.Lease{session, ttl} {
		out := make(chan error, 1)
		go func() { out <- op.Revoke(ctx, held.Name(), held.Token()) }()
		require.NoError(t, awaitCall(t, out, "Revoke of "+held.Name()))
		assert.True(t, isClosed(held.Done()), "%s: the holder had let go when Revoke returned", held.Name())
		assert.ErrorIs(t, held.Err(), lock.ErrRevoked, held.Name())
	}
}

// TestRevoke_GraceForGoneHolder: a TTL lease whose holder cannot hear
// (gone, stopped) is ended by the store after the grace, the revoking
// Locker's SessionTTL, not after its hour; until then it cannot be adopted,
// and a Revoke whose ctx ends first returns ctx's error with the revoke in
// effect. The holder's Done stays open: the documented exception to I3
// that fencing covers.
func TestRevoke_GraceForGoneHolder(t *testing.T) {
	const grace = 5 * time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	gone := newLocker(t, srv.Addr(), time.Second)
	op := newLocker(t, srv.Addr(), grace)
	ctx := testCtx(t)
	name := "revoke-grace"
	held, err := gone.Acquire(ctx, name, lock.WithTTL(time.Hour))
	require.NoError(t, err)
	require.NoError(t, redis.Deafen(gone))
	redis.StopRenewals(gone)

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err = op.Revoke(short, name, held.Token())
	require.ErrorIs(t, err, context.DeadlineExceeded, "the holder cannot let go, the grace has not passed")
	require.NotErrorIs(t, err, lock.ErrNotHeld)
	info, err := op.Inspect(ctx, name)
	require.NoError(t, err)
	require.True(t, info.Held)
	assert.LessOrEqual(t, info.ExpiresIn, grace, "the revoke shortened the hour to the grace")
	_, err = op.Adopt(ctx, name, held.Token())
	assert.ErrorIs(t, err, lock.ErrNotHeld, "a revoked lease cannot be adopted")

	out := make(chan error, 1)
	go func() { out <- op.Revoke(ctx, name, held.Token()) }()
	require.NoError(t, awaitCall(t, out, "Revoke of a lease whose holder is gone"))
	next, err := op.TryAcquire(ctx, name)
	require.NoError(t, err, "free once Revoke returned")
	assert.Greater(t, next.Token(), held.Token())
	assert.False(t, isClosed(held.Done()), "a holder that cannot hear keeps its Done open (documented exception)")
	require.NoError(t, next.Release(ctx))
}
