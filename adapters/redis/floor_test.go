package redis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestFloorToken_RaisesNextToken: after FloorToken(floor) the next grant,
// by another Locker, is floor + 1 (the counter's INCR), and the one after
// it floor + 2; a held lease is left alone.
func TestFloorToken_RaisesNextToken(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newLocker(t, srv.Addr(), 2*time.Second)
	b := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	const name = "floor-raise"
	held, err := a.Acquire(ctx, name)
	require.NoError(t, err)
	floor := held.Token() + 1000

	require.NoError(t, a.FloorToken(ctx, name, floor))
	info, err := a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, held.Token(), info.Token, "the held lease keeps its token")
	require.NoError(t, held.Refresh(ctx), "the held lease is untouched")
	require.NoError(t, held.Release(ctx))

	next, err := b.Acquire(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, floor+1, next.Token(), "the first grant after the floor")
	require.NoError(t, next.Release(ctx))
	assert.Equal(t, floor+2, acquireN(t, a, name, 1), "the second grant after the floor")
}

// TestFloorToken_BelowChangesNothing: a floor at or below the counter
// does not lower it; the next token is the one the store would have
// issued anyway.
func TestFloorToken_BelowChangesNothing(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	const name = "floor-below"
	last := acquireN(t, l, name, 5)
	for _, floor := range []uint64{last, last - 1, 1, 0} {
		require.NoError(t, l.FloorToken(ctx, name, floor), "floor %d", floor)
	}
	assert.Equal(t, last+1, acquireN(t, l, name, 1), "the natural next token")
}

// TestFloorToken_InvalidBeforeIO: a bad name, a floor above
// lock.MaxTokenFloor and one above the adapter's own bound are refused
// without asking the store: on a store that is down the errors are the
// validation's, not ErrNoQuorum. Both modes.
func TestFloorToken_InvalidBeforeIO(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	one := newLocker(t, srv.Addr(), 2*time.Second)
	many := newRedlock(t, addrs, 2*time.Second)
	srv.Kill()
	for _, s := range srvs {
		s.Kill()
	}
	ctx := testCtx(t)
	for mode, l := range map[string]*redis.Locker{"single": one, "redlock": many} {
		err := l.FloorToken(ctx, "", 1)
		require.ErrorIs(t, err, lock.ErrInvalidName, mode)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, mode+": an empty name")
		err = l.FloorToken(ctx, "bad\x00name", 1)
		require.ErrorIs(t, err, lock.ErrInvalidName, mode)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, mode+": a control character")

		err = l.FloorToken(ctx, "floor-invalid", lock.MaxTokenFloor+1)
		require.ErrorIs(t, err, lock.ErrInvalidOption, mode)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, mode)

		const tooHigh = 1<<52 + 1
		err = l.FloorToken(ctx, "floor-invalid", tooHigh)
		require.ErrorIs(t, err, lock.ErrUnsupported, mode)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, mode)
		assert.Contains(t, err.Error(), strconv.FormatUint(tooHigh, 10), mode+": the floor")
		assert.Contains(t, err.Error(), strconv.FormatUint(1<<52, 10), mode+": the bound")

		err = l.FloorToken(ctx, "floor-invalid", 1<<52)
		assert.ErrorIs(t, err, lock.ErrNoQuorum, mode+": the bound itself is a valid floor, tried on the dead store")
	}
}

// TestFloorToken_Unreachable (R5): a stopped store gives ErrNoQuorum; an
// ended ctx on a reachable store gives ctx's error alone; a closed
// Locker gives ErrClosed.
func TestFloorToken_Unreachable(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	err := l.FloorToken(ended, "floor-down", 10)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, lock.ErrNoQuorum, "an ended ctx on a reachable store")

	srv.Pause()
	defer srv.Resume()
	short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	err = l.FloorToken(short, "floor-down", 10)
	require.ErrorIs(t, err, lock.ErrNoQuorum, "a stalled store")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "ctx ended while the store was stalled")
	srv.Resume()

	srv.Kill()
	err = l.FloorToken(ctx, "floor-down", 10)
	require.ErrorIs(t, err, lock.ErrNoQuorum, "a dead store")

	require.NoError(t, l.Close())
	assert.ErrorIs(t, l.FloorToken(ctx, "floor-down", 10), lock.ErrClosed)
}

// TestRedlock_FloorToken: the floor is taken by a majority while one
// primary is stalled; after that primary is back and another is stalled,
// a grant on the new majority still exceeds the floor (the two majorities
// share a primary). A floor below the counters changes nothing. With two of three stalled, FloorToken fails with
// ErrNoQuorum.
func TestRedlock_FloorToken(t *testing.T) {
	const ttl = 2 * time.Second
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	a := newRedlock(t, addrs, ttl)
	b := newRedlock(t, addrs, ttl)
	ctx := testCtx(t)
	const name = "redlock-floor"
	low := acquireN(t, a, name+"-below", 3)
	require.NoError(t, a.FloorToken(ctx, name+"-below", 1), "a floor below every counter")
	assert.Equal(t, low+1, acquireN(t, b, name+"-below", 1), "a floor below changes nothing")

	floor := acquireN(t, a, name, 3) + 500

	srvs[2].Pause()
	require.NoError(t, a.FloorToken(ctx, name, floor), "two of three primaries take the floor")
	srvs[2].Resume()
	srvs[0].Pause()
	next, err := b.Acquire(ctx, name)
	require.NoError(t, err)
	assert.Greater(t, next.Token(), floor, "a grant on primaries 1 and 2")
	second := next.Token()
	require.NoError(t, next.Release(ctx))
	assert.Greater(t, acquireN(t, a, name, 1), second, "the next grant")
	srvs[0].Resume()

	srvs[0].Pause()
	srvs[1].Pause()
	defer srvs[0].Resume()
	defer srvs[1].Resume()
	err = a.FloorToken(ctx, name, floor*2)
	require.ErrorIs(t, err, lock.ErrNoQuorum, "one primary of three")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "ctx is live: the primaries' own timeouts are not ctx's")
}
