package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/lock"
)

// newLocker returns a Locker on addr with a short session TTL, closed when
// the test ends.
func newLocker(t *testing.T, addr string, sessionTTL time.Duration) *redis.Locker {
	t.Helper()
	l, err := redis.New(redis.Config{Addr: addr, SessionTTL: sessionTTL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitDone waits for a lease to end and returns when it was seen ending.
func waitDone(t *testing.T, lease lock.Lease, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-lease.Done():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: lease still held after %v", what, within)
	}
	panic("unreachable")
}

// acquireN takes and releases name n times, to move its fence counter on,
// and returns the last token.
func acquireN(t *testing.T, l lock.Locker, name string, n int) uint64 {
	t.Helper()
	var last uint64
	for range n {
		lease, err := l.Acquire(testCtx(t), name)
		require.NoError(t, err)
		last = lease.Token()
		require.NoError(t, lease.Release(testCtx(t)))
	}
	return last
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitWaiters polls Inspect until name has n waiters.
func waitWaiters(t *testing.T, l lock.Locker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := l.Inspect(testCtx(t), name)
		require.NoError(t, err)
		if info.Waiters == n {
			return
		}
		require.Falsef(t, time.Now().After(deadline), "Inspect(%q).Waiters = %d, want %d", name, info.Waiters, n)
		<-time.After(5 * time.Millisecond)
	}
}

// requireEndedCtxAlone (R5): with the store reachable, every call of l whose
// ctx had ended before it began answers ctx's error alone, not
// ErrNoQuorum. It returns the lease on name it holds for Refresh and
// Release; the caller releases it.
func requireEndedCtxAlone(t *testing.T, l lock.Locker, name, where string) lock.Lease {
	t.Helper()
	ctx := testCtx(t)
	held, err := l.Acquire(ctx, name)
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	for _, call := range []struct {
		what string
		do   func() error
	}{
		{"Acquire", func() error { _, err := l.Acquire(ended, name+"-free"); return err }},
		{"TryAcquire", func() error { _, err := l.TryAcquire(ended, name+"-free"); return err }},
		{"Inspect", func() error { _, err := l.Inspect(ended, name); return err }},
		{"Refresh", func() error { return held.Refresh(ended) }},
		{"Release", func() error { return held.Release(ended) }},
	} {
		err := call.do()
		assert.ErrorIs(t, err, context.Canceled, call.what)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, call.what+" with an ended ctx, "+where)
	}
	return held
}
