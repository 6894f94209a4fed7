package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// Close of the etcd peer ends its leases as lock.Locker says: Done closed
// with ErrReleased, Release answering ErrNotHeld with that cause, the
// name free at once for another Locker; Close is idempotent and calls
// after it answer ErrClosed.
func TestEtcdLocker_Close(t *testing.T) {
	endpoint := startEtcd(t)
	a, err := newEtcdLocker([]string{endpoint})
	require.NoError(t, err)
	la, err := a.Acquire(t.Context(), "close")
	require.NoError(t, err)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")

	<-la.Done()
	require.ErrorIs(t, la.Err(), lock.ErrReleased)
	err = la.Release(t.Context())
	require.ErrorIs(t, err, lock.ErrNotHeld)
	require.ErrorIs(t, err, lock.ErrReleased)
	require.ErrorIs(t, la.Refresh(t.Context()), lock.ErrNotHeld)
	_, err = a.Acquire(t.Context(), "other")
	require.ErrorIs(t, err, lock.ErrClosed)
	_, err = a.TryAcquire(t.Context(), "other")
	require.ErrorIs(t, err, lock.ErrClosed)
	_, err = a.Inspect(t.Context(), "other")
	require.ErrorIs(t, err, lock.ErrClosed)

	b, err := newEtcdLocker([]string{endpoint})
	require.NoError(t, err)
	defer func() { assert.NoError(t, b.Close()) }()
	lb, err := b.TryAcquire(t.Context(), "close")
	require.NoError(t, err, "the closed Locker's lease was released")
	assert.Greater(t, lb.Token(), la.Token())
}
