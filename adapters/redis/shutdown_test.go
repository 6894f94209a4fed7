package redis_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestShutdown_Releases (issue 13, item 7): with the store reachable,
// Shutdown releases the Locker's leases and withdraws its queued claim in
// the store before it returns: another Locker sees the names free and
// nobody waiting (no expiry could explain it: the SessionTTL is long).
func TestShutdown_Releases(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	reg := prometheus.NewPedanticRegistry()
	a := newMeasured(t, reg, "a", redis.Config{Addr: srv.Addr(), SessionTTL: time.Minute})
	b := newLocker(t, srv.Addr(), time.Minute)
	ctx := testCtx(t)
	session, err := a.Acquire(ctx, "shutdown/session")
	require.NoError(t, err)
	ttl, err := a.Acquire(ctx, "shutdown/ttl", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	busy, err := b.Acquire(ctx, "shutdown/busy")
	require.NoError(t, err)
	queued := goAcquire(ctx, a, "shutdown/busy")
	waitWaiters(t, b, "shutdown/busy", 1)
	awaitSample(t, reg, 2, "quorumlock_held", "locker", "a")
	awaitSample(t, reg, 1, "quorumlock_waiting", "locker", "a")

	require.NoError(t, a.Shutdown(ctx))
	_, err = awaitLease(t, queued, "the queued Acquire")
	require.ErrorIs(t, err, lock.ErrClosed)
	for _, lease := range []lock.Lease{session, ttl} {
		require.ErrorIs(t, lease.Err(), lock.ErrReleased)
		info, err := b.Inspect(ctx, lease.Name())
		require.NoError(t, err)
		assert.False(t, info.Held, "%s released in the store by Shutdown", lease.Name())
	}
	info, err := b.Inspect(ctx, "shutdown/busy")
	require.NoError(t, err)
	assert.Zero(t, info.Waiters, "the queued claim withdrawn by Shutdown")
	require.NoError(t, busy.Release(ctx))
	e := scrape(t, reg)
	for _, g := range []string{"quorumlock_held", "quorumlock_waiting", "quorumlock_sessions"} {
		e.count(t, 0, g, "locker", "a")
	}
	require.NoError(t, a.Close(), "Close after Shutdown does nothing")
	_, err = a.Acquire(ctx, "shutdown/after")
	require.ErrorIs(t, err, lock.ErrClosed)
}

// TestShutdown_EndedCtx (issue 13, item 7): a Shutdown whose ctx has ended,
// on a store that is stopped (SIGSTOP) or killed, returns ctx's error
// without waiting for the store (the test would hang, or wait out
// opTimeout, if it did): the leases end locally with ErrReleased, a queued
// Acquire returns ErrClosed, the gauges read 0, and a Warn record says what
// was left to the store's expiry. No timing is asserted.
func TestShutdown_EndedCtx(t *testing.T) {
	for _, fault := range []string{"paused", "killed"} {
		t.Run(fault, func(t *testing.T) {
			srv := testserver.StartRedis(t, testserver.RedisOptions{})
			reg := prometheus.NewPedanticRegistry()
			logs := &records{}
			a := newMeasured(t, reg, "a", redis.Config{Addr: srv.Addr(), SessionTTL: time.Minute, Logger: slog.New(logs)})
			b := newLocker(t, srv.Addr(), time.Minute)
			ctx := testCtx(t)
			session, err := a.Acquire(ctx, "ended/session")
			require.NoError(t, err)
			ttl, err := a.Acquire(ctx, "ended/ttl", lock.WithTTL(time.Hour))
			require.NoError(t, err)
			_, err = b.Acquire(ctx, "ended/busy")
			require.NoError(t, err)
			queued := goAcquire(ctx, a, "ended/busy")
			waitWaiters(t, b, "ended/busy", 1)
			awaitSample(t, reg, 2, "quorumlock_held", "locker", "a")
			awaitSample(t, reg, 1, "quorumlock_waiting", "locker", "a")
			awaitSample(t, reg, 1, "quorumlock_sessions", "locker", "a")

			if fault == "paused" {
				srv.Pause()
				t.Cleanup(srv.Resume)
			} else {
				srv.Kill()
			}
			ended, cancel := context.WithCancel(ctx)
			cancel()
			err = a.Shutdown(ended)
			require.ErrorIs(t, err, context.Canceled)
			for _, lease := range []lock.Lease{session, ttl} {
				require.ErrorIs(t, lease.Err(), lock.ErrReleased, "%s ends locally", lease.Name())
			}
			_, err = awaitLease(t, queued, "the queued Acquire")
			require.ErrorIs(t, err, lock.ErrClosed)
			e := scrape(t, reg)
			for _, g := range []string{"quorumlock_held", "quorumlock_waiting", "quorumlock_sessions"} {
				e.count(t, 0, g, "locker", "a")
			}
			_, warned := logs.find(slog.LevelWarn, "redis lock: shutdown")
			assert.True(t, warned, "a Warn record says what was left to the store; records: %v", logs.messages())
			for _, msg := range logs.messagesAt(slog.LevelWarn) {
				assert.True(t, strings.HasPrefix(msg, "redis lock: shutdown"), "only the shutdown's summary at Warn, not %q", msg)
			}
			require.NoError(t, a.Close(), "Close after Shutdown does nothing")
		})
	}
}

// TestShutdown_RedlockEndedCtx: the same in Redlock mode, with a majority
// of primaries stopped.
func TestShutdown_RedlockEndedCtx(t *testing.T) {
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	reg := prometheus.NewPedanticRegistry()
	a := newMeasured(t, reg, "a", redis.Config{Addrs: addrs, SessionTTL: time.Minute})
	ctx := testCtx(t)
	lease, err := a.Acquire(ctx, "ended/redlock")
	require.NoError(t, err)
	awaitSample(t, reg, 1, "quorumlock_held", "locker", "a")
	awaitSample(t, reg, 1, "quorumlock_sessions", "locker", "a")
	srvs[0].Pause()
	srvs[1].Pause()
	t.Cleanup(srvs[0].Resume)
	t.Cleanup(srvs[1].Resume)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, a.Shutdown(ended), context.Canceled)
	require.ErrorIs(t, lease.Err(), lock.ErrReleased)
	e := scrape(t, reg)
	for _, g := range []string{"quorumlock_held", "quorumlock_waiting", "quorumlock_sessions"} {
		e.count(t, 0, g, "locker", "a")
	}
}
