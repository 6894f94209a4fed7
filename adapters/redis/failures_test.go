package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// awaitCall waits for a call's error, failing the test if the call is
// still blocked after a generous bound (a liveness check, not a speed one).
func awaitCall(t *testing.T, out <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-out:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still blocked after 30 s", what)
	}
	panic("unreachable")
}

// TestRelease_ReturnsWhenLeaseEnds (R4, R2): a Release(context.Background())
// waiting on a stalled server returns once the lease's local deadline
// passes, with ErrNotHeld and the end cause, while the server is still
// stalled; after it resumes the name is free again (the store's copy is
// deleted by token or expires) and goes to another Locker.
func TestRelease_ReturnsWhenLeaseEnds(t *testing.T) {
	const ttl = 2 * time.Second
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), ttl)
	lease, err := l.Acquire(testCtx(t), "release-stalled")
	require.NoError(t, err)

	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	out := make(chan error, 1)
	go func() { out <- lease.Release(context.Background()) }()
	err = awaitCall(t, out, "Release(context.Background()) on a stalled server")
	require.ErrorIs(t, err, lock.ErrNotHeld, "Release must return once the lease has ended")
	require.ErrorIs(t, err, lock.ErrLost, "with the lease's end cause")
	assert.True(t, isClosed(lease.Done()))
	require.ErrorIs(t, lease.Refresh(context.Background()), lock.ErrNotHeld)
	srv.Resume()
	resumed = true

	other := newLocker(t, srv.Addr(), ttl)
	next, err := other.Acquire(testCtx(t), "release-stalled")
	require.NoError(t, err)
	assert.Greater(t, next.Token(), lease.Token())
	require.NoError(t, next.Release(testCtx(t)))
}

// TestRefresh_ReturnsWhenLeaseEnds (R4, R2): the same for a TTL lease's
// Refresh(context.Background()): ErrNotHeld wrapping ErrExpired once the
// TTL has run out locally, while the server is still stalled.
func TestRefresh_ReturnsWhenLeaseEnds(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), time.Second)
	lease, err := l.Acquire(testCtx(t), "refresh-stalled", lock.WithTTL(2*time.Second))
	require.NoError(t, err)

	srv.Pause()
	defer srv.Resume()
	out := make(chan error, 1)
	go func() { out <- lease.Refresh(context.Background()) }()
	err = awaitCall(t, out, "Refresh(context.Background()) on a stalled server")
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrExpired)
	assert.True(t, isClosed(lease.Done()))
}

// TestNoQuorum_ServerDown (R5): with the server down every call that ends
// because it cannot be reached wraps lock.ErrNoQuorum, also ctx's error when
// ctx ended, and keeps the cause ("connection refused") in the message.
func TestNoQuorum_ServerDown(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 10*time.Second)
	held, err := l.Acquire(testCtx(t), "nq-held")
	require.NoError(t, err)
	srv.Kill()

	check := func(what string, err error, ctxErr error) {
		t.Helper()
		require.ErrorIs(t, err, lock.ErrNoQuorum, what)
		assert.Contains(t, err.Error(), "connection refused", what)
		if ctxErr != nil {
			assert.ErrorIs(t, err, ctxErr, what)
		}
	}
	_, err = l.TryAcquire(testCtx(t), "nq")
	check("TryAcquire", err, nil)
	_, err = l.Inspect(testCtx(t), "nq")
	check("Inspect", err, nil)
	check("Refresh", held.Refresh(testCtx(t)), nil)
	check("Release", held.Release(testCtx(t)), nil)

	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx, "nq")
	check("Acquire until ctx ends", err, context.DeadlineExceeded)

	fresh := newLocker(t, srv.Addr(), time.Second) // never subscribed
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = fresh.Acquire(ctx, "nq")
	check("Acquire of a Locker that never reached the store", err, context.DeadlineExceeded)
}

// TestNoQuorum_NotWhenQueued (R5): ctx ending while the store answers (the
// waiter queued behind a holder) is ctx's error alone.
func TestNoQuorum_NotWhenQueued(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), time.Second)
	_, err := l.Acquire(testCtx(t), "nq-queued")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx, "nq-queued")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, lock.ErrNoQuorum)
}

// TestNoQuorum_ServerStalled (R5): a stalled server is unreachable too: a
// call that ends with its ctx reports both.
func TestNoQuorum_ServerStalled(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 10*time.Second)
	held, err := l.Acquire(testCtx(t), "nq-stalled")
	require.NoError(t, err)
	srv.Pause()
	defer srv.Resume()
	for _, call := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"Inspect", func(ctx context.Context) error { _, err := l.Inspect(ctx, "nq-stalled"); return err }},
		{"Refresh", held.Refresh},
		{"Release", held.Release},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err := call.do(ctx)
		cancel()
		require.ErrorIs(t, err, lock.ErrNoQuorum, call.what)
		require.ErrorIs(t, err, context.DeadlineExceeded, call.what)
	}
}
