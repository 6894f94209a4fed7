package redis_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestAdopt_HolderVanished (issue 13, item 4): another Locker adopts the
// TTL lease of a holder that is gone: same token, owner and age, a full TTL
// again, the adopter as Holder and Node; it then refreshes and releases it
// like its own.
func TestAdopt_HolderVanished(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	raw := rawClient(t, srv.Addr())
	a := newNodeLocker(t, srv.Addr(), "node-a", time.Second, nil)
	b := newNodeLocker(t, srv.Addr(), "node-b", time.Second, nil)
	ctx := testCtx(t)
	name := "adopt-vanished"
	lease, err := a.Acquire(ctx, name, lock.WithTTL(time.Minute), lock.WithOwner("job 7"))
	require.NoError(t, err)
	before, err := b.Inspect(ctx, name)
	require.NoError(t, err)
	require.NoError(t, redis.Deafen(a))
	redis.StopRenewals(a)
	// Most of the TTL has passed: the adoption must give it a full TTL again.
	require.NoError(t, raw.PExpire(ctx, redis.DefaultPrefix+"lease:"+name, 5*time.Second).Err())

	adopted, err := b.Adopt(ctx, name, lease.Token())
	require.NoError(t, err)
	assert.Equal(t, name, adopted.Name())
	assert.Equal(t, lease.Token(), adopted.Token(), "Adopt keeps the token")
	info, err := a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, lease.Token(), info.Token)
	assert.Equal(t, "job 7", info.Owner, "Adopt keeps the owner")
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Equal(t, "node-b", info.Node)
	assert.NotEqual(t, before.Holder, info.Holder, "the adopter is the holder now")
	mine, err := b.Acquire(ctx, name+"-b")
	require.NoError(t, err)
	assert.Equal(t, holderOf(t, a, name+"-b"), info.Holder, "the adopter's Holder")
	require.NoError(t, mine.Release(ctx))
	assert.GreaterOrEqual(t, info.Since, before.Since, "the same grant: its age goes on")
	assert.Greater(t, info.ExpiresIn, 30*time.Second, "refreshed for its full TTL")
	assert.LessOrEqual(t, info.ExpiresIn, time.Minute)

	require.NoError(t, adopted.Refresh(ctx))
	require.NoError(t, adopted.Release(ctx))
	info, err = a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.False(t, info.Held, "the adopter's Release frees it")
}

// TestAdopt_LiveHolderIsTold: a previous holder that is still alive hears
// of the adoption: its Done closes with ErrAdopted (also ErrLost), it logs
// it at Warn, and neither its Release nor its Close touches the adopted
// lease.
func TestAdopt_LiveHolderIsTold(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	logs := &records{}
	a := newNodeLocker(t, srv.Addr(), "node-a", time.Second, logs)
	b := newLocker(t, srv.Addr(), time.Second)
	ctx := testCtx(t)
	name := "adopt-live"
	lease, err := a.Acquire(ctx, name, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	holder := holderOf(t, b, name)

	adopted, err := b.Adopt(ctx, name, lease.Token())
	require.NoError(t, err)
	waitDone(t, lease, 30*time.Second, "the previous holder's lease")
	require.ErrorIs(t, lease.Err(), lock.ErrAdopted)
	require.ErrorIs(t, lease.Err(), lock.ErrLost)
	attrs, ok := logs.find(slog.LevelWarn, "adopted")
	require.True(t, ok, "the previous holder's Locker logs the adoption at Warn")
	assert.Equal(t, name, attrs["name"])
	assert.Equal(t, lease.Token(), attrs["token"])
	assert.Equal(t, holder, attrs["holder"])

	require.ErrorIs(t, lease.Release(ctx), lock.ErrNotHeld)
	require.NoError(t, a.Close())
	assert.Equal(t, adopted.Token(), holderToken(t, b, name), "still held by the adopter")
	require.NoError(t, adopted.Refresh(ctx))
	require.NoError(t, adopted.Release(ctx))
}

// TestAdopt_OldHolderCannotTouchIt: a previous holder that did not hear of
// the adoption (its message lost) is refused by the store: its Refresh and
// its Release end its lease with ErrAdopted and leave the adopted lease
// held, not extended or deleted by the shared token.
func TestAdopt_OldHolderCannotTouchIt(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), time.Minute) // no renewer check during the test
	b := newLocker(t, srv.Addr(), time.Second)
	ctx := testCtx(t)
	refreshed, err := a.Acquire(ctx, "old-refresh", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	released, err := a.Acquire(ctx, "old-release", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, redis.Deafen(a))

	for _, old := range []lock.Lease{refreshed, released} {
		adopted, err := b.Adopt(ctx, old.Name(), old.Token())
		require.NoError(t, err)
		assert.Nil(t, old.Err(), "the deaf holder has not heard")
		call := old.Refresh
		if old == released {
			call = old.Release
		}
		err = call(ctx)
		require.ErrorIs(t, err, lock.ErrNotHeld, old.Name())
		require.ErrorIs(t, err, lock.ErrAdopted, old.Name())
		assert.ErrorIs(t, old.Err(), lock.ErrAdopted, old.Name())
		assert.Equal(t, adopted.Token(), holderToken(t, b, old.Name()), "%s: still held by the adopter", old.Name())
		require.NoError(t, adopted.Release(ctx))
	}
}

// TestAdopt_Refused: a session lease, a wrong token, token 0 and a free
// name are ErrNotHeld (a revoked lease: TestRevoke_GraceForGoneHolder).
func TestAdopt_Refused(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), time.Second)
	b := newLocker(t, srv.Addr(), time.Second)
	ctx := testCtx(t)
	session, err := a.Acquire(ctx, "adopt-session")
	require.NoError(t, err)
	ttl, err := a.Acquire(ctx, "adopt-ttl", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	for what, call := range map[string]func() (lock.Lease, error){
		"a session lease": func() (lock.Lease, error) { return b.Adopt(ctx, session.Name(), session.Token()) },
		"a wrong token":   func() (lock.Lease, error) { return b.Adopt(ctx, ttl.Name(), ttl.Token()+1) },
		"token 0":         func() (lock.Lease, error) { return b.Adopt(ctx, ttl.Name(), 0) },
		"a free name":     func() (lock.Lease, error) { return b.Adopt(ctx, "adopt-free", 1) },
	} {
		lease, err := call()
		assert.ErrorIs(t, err, lock.ErrNotHeld, what)
		assert.Nil(t, lease, what)
	}
	_, err = b.Adopt(ctx, "", 1)
	assert.ErrorIs(t, err, lock.ErrInvalidName)
	assert.Nil(t, session.Err(), "a refused adoption leaves the lease alone")
	assert.Nil(t, ttl.Err())
	assert.Equal(t, session.Token(), holderToken(t, b, session.Name()))
	require.NoError(t, session.Release(ctx))
	require.NoError(t, ttl.Release(ctx))
}
