package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// passDeadline makes a TTL lease's local deadline pass now, as if its TTL
// had run out: the test need not wait a whole TTL.
func passDeadline(l *lease) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.deadline = time.Now()
	l.timer.Reset(0)
}

// TestLease_RefreshLandingAfterLocalDeadline (issue 11, item 2): a
// Refresh whose commit lands after the holder's local deadline must not
// answer nil — the lease is over for the holder — and the store-side
// lease it renewed for a full TTL must be released, not left held with no
// holder.
func TestLease_RefreshLandingAfterLocalDeadline(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	const ttl = time.Minute // far longer than the test's bounds: only a release frees the name
	got, err := n.Acquire(ctx, "r", lock.WithTTL(ttl))
	require.NoError(t, err)
	l := got.(*lease)

	// Stall the FSM so that the Refresh commits but is not applied (its
	// answer waits) until after the local deadline passed.
	n.bridge.mu.RLock()
	before := n.raft.LastIndex()
	refreshed := make(chan error, 1)
	go func() { refreshed <- l.Refresh(ctx) }()
	waitFor(t, func() bool { return n.raft.LastIndex() > before }) // the Refresh is in the log
	passDeadline(l)
	<-l.Done()
	n.bridge.mu.RUnlock()

	err = <-refreshed
	require.ErrorIs(t, err, lock.ErrNotHeld, "Refresh of a lease whose Done closed while it was in flight")
	require.ErrorIs(t, err, lock.ErrExpired, "Refresh's error wraps the lease's end cause")
	require.ErrorIs(t, l.Err(), lock.ErrExpired)

	relErr := l.Release(ctx)
	require.ErrorIs(t, relErr, lock.ErrNotHeld)
	require.ErrorIs(t, relErr, lock.ErrExpired)

	// The store lets the name go long before the TTL the late Refresh gave it.
	waitFor(t, func() bool {
		info, err := n.Inspect(ctx, "r")
		return err == nil && !info.Held
	})
	other, err := n.NewLocker(ctx)
	require.NoError(t, err)
	defer func() { _ = other.Close() }()
	next, err := other.TryAcquire(ctx, "r")
	require.NoError(t, err)
	assert.Greater(t, next.Token(), l.Token())
}

// TestLease_ReleaseAfterLocalExpiryReleasesInStore (issue 11, item 2): a
// lease that ended locally (its deadline passed) answers Release with
// ErrNotHeld wrapping the cause, at once, and is still released in the
// store by token.
func TestLease_ReleaseAfterLocalExpiryReleasesInStore(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{})
	got, err := n.Acquire(ctx, "x", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	l := got.(*lease)
	passDeadline(l)
	<-l.Done()
	err = l.Release(ctx)
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrExpired)
	waitFor(t, func() bool {
		info, err := n.Inspect(ctx, "x")
		return err == nil && !info.Held
	})
	// A second Release, and a Refresh, of the ended lease say the same.
	require.ErrorIs(t, l.Release(ctx), lock.ErrNotHeld)
	require.ErrorIs(t, l.Refresh(ctx), lock.ErrExpired)
}
