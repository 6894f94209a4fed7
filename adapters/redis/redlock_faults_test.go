package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// heldOnTwo starts three primaries and has a Locker (SessionTTL 20 s, so
// that the lease outlives the test's faults) acquire name while primary 2
// is down: the lease is held on exactly primaries 0 and 1.
func heldOnTwo(t *testing.T, name string) ([]*testserver.Redis, []string, lock.Lease) {
	t.Helper()
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	srvs[2].Kill()
	a := newRedlock(t, addrs, 20*time.Second)
	lease, err := a.Acquire(testCtx(t), name)
	require.NoError(t, err)
	srvs[2].Restart()
	return srvs, addrs, lease
}

// TestRedlock_StalledHolderPrimaryIsNoSplit (item 13): the lease is held
// on exactly a majority and one of those primaries is stalled; the other
// primaries answer "held" and "free". The stalled primary may complete the
// holder's majority, so this is not a split vote: one round, ErrHeld.
func TestRedlock_StalledHolderPrimaryIsNoSplit(t *testing.T) {
	srvs, addrs, lease := heldOnTwo(t, "stalled-holder")
	srvs[0].Pause()
	defer srvs[0].Resume()
	b := newRedlock(t, addrs, time.Second)

	_, err := b.Inspect(testCtx(t), "stalled-holder")
	require.ErrorIs(t, err, lock.ErrNoQuorum, "held on one primary, the stalled one may make it a majority")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the caller's ctx did not end; a per-primary timeout is only the message")

	before := redis.Rounds(b)
	_, err = b.TryAcquire(testCtx(t), "stalled-holder")
	require.ErrorIs(t, err, lock.ErrHeld)
	assert.Equal(t, int64(1), redis.Rounds(b)-before, "a primary that did not answer is no split vote")
	assert.NoError(t, lease.Err())
}

// TestRedlock_InspectUnsettled (item 15): held on {A, B}, A unreachable,
// B held, C free: neither "held" nor "free" has a majority, so Inspect
// answers ErrNoQuorum rather than Held: false.
func TestRedlock_InspectUnsettled(t *testing.T) {
	srvs, addrs, lease := heldOnTwo(t, "unsettled")
	srvs[0].Kill()
	b := newRedlock(t, addrs, time.Second)
	info, err := b.Inspect(testCtx(t), "unsettled")
	require.ErrorIs(t, err, lock.ErrNoQuorum, "Inspect answered %+v", info)
	assert.Contains(t, err.Error(), "connection refused")
	assert.NoError(t, lease.Err())
}

// TestRedlock_MinorityRefuses (item 14): one primary of three refuses
// writes (OOM after CONFIG SET maxmemory 1); the healthy majority still
// grants, and a majority refusing fails the call at once instead of
// retrying until ctx ends.
func TestRedlock_MinorityRefuses(t *testing.T) {
	_, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	oom := func(addr string) {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		defer func() { _ = c.Close() }()
		require.NoError(t, c.ConfigSet(testCtx(t), "maxmemory-policy", "noeviction").Err())
		require.NoError(t, c.ConfigSet(testCtx(t), "maxmemory", "1").Err())
	}
	oom(addrs[2])
	l := newRedlock(t, addrs, time.Second)
	lease, err := l.Acquire(testCtx(t), "oom")
	require.NoError(t, err, "a healthy majority grants")
	other, err := l.TryAcquire(testCtx(t), "oom-try")
	require.NoError(t, err)
	info, err := l.Inspect(testCtx(t), "oom")
	require.NoError(t, err)
	assert.True(t, info.Held)
	require.NoError(t, lease.Release(testCtx(t)))
	require.NoError(t, other.Release(testCtx(t)))

	oom(addrs[1])
	_, err = l.Acquire(testCtx(t), "oom")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OOM")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "a refusal by a majority is final")
}

// TestRedlock_NoQuorum (R5): with a majority of primaries down, an Acquire
// that ends with its ctx reports ErrNoQuorum and ctx's error, with the
// cause in the message, also from a Locker that never reached them.
func TestRedlock_NoQuorum(t *testing.T) {
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	l := newRedlock(t, addrs, time.Second)
	lease, err := l.Acquire(testCtx(t), "nq") // subscribed everywhere
	require.NoError(t, err)
	srvs[0].Kill()
	srvs[1].Kill()
	for _, lk := range []*redis.Locker{l, newRedlock(t, addrs, time.Second)} {
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		_, err := lk.Acquire(ctx, "nq-other")
		cancel()
		require.ErrorIs(t, err, lock.ErrNoQuorum)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "connection refused")
	}
	out := make(chan error, 1)
	go func() { out <- lease.Release(context.Background()) }()
	err = awaitCall(t, out, "Redlock Release(context.Background()) without a majority")
	assert.True(t, errors.Is(err, lock.ErrNoQuorum) || errors.Is(err, lock.ErrNotHeld), "Release: %v", err)

	// Once the lease has ended (its parts' deadlines passed), Release and
	// Refresh answer at once with ErrNotHeld and the end cause (R2).
	waitDone(t, lease, 30*time.Second, "a Redlock lease without a majority")
	require.ErrorIs(t, lease.Err(), lock.ErrLost)
	for what, err := range map[string]error{
		"Release": lease.Release(context.Background()),
		"Refresh": lease.Refresh(context.Background()),
	} {
		require.ErrorIs(t, err, lock.ErrNotHeld, what)
		require.ErrorIs(t, err, lock.ErrLost, what)
	}
}

// TestRedlock_NotNoQuorumWhenCtxEndedFirst (R5): with every primary
// reachable, each call whose ctx had ended before it began answers ctx's
// error alone — the parts' ctx errors are no missing majority.
func TestRedlock_NotNoQuorumWhenCtxEndedFirst(t *testing.T) {
	_, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	l := newRedlock(t, addrs, 2*time.Second)
	ctx := testCtx(t)
	held := requireEndedCtxAlone(t, l, "rl-ended", "every primary reachable")
	_ = held.Release(ctx)
}
