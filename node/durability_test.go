package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

func TestNew_DataDirInUse(t *testing.T) {
	dir := t.TempDir()
	newNode(t, Config{DataDir: dir})
	_, err := New(Config{DataDir: dir})
	assert.Error(t, err, "a second node on the same DataDir must fail, not hang")
}

// TestNode_RestartKeepsState kills the node (no release, no session close),
// reopens it on the same DataDir, and checks that leases, queues and the
// token counter survived; then that the dead process's sessions expire and
// hand over, while its TTL lease lives on to its TTL.
func TestNode_RestartKeepsState(t *testing.T) {
	for _, snapshotFirst := range []bool{false, true} {
		name := "log"
		if snapshotFirst {
			name = "snapshot+log"
		}
		t.Run(name, func(t *testing.T) { restartKeepsState(t, snapshotFirst) })
	}
}

// restartKeepsState is one run of TestNode_RestartKeepsState; with
// snapshotFirst the node snapshots before it is killed, so the restart
// restores a snapshot and replays the log after it.
func restartKeepsState(t *testing.T, snapshotFirst bool) {
	ctx := testCtx(t)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, SessionTTL: time.Second}
	n, err := New(cfg)
	require.NoError(t, err)
	x, err := n.NewLocker(ctx)
	require.NoError(t, err)
	y, err := n.NewLocker(ctx)
	require.NoError(t, err)

	ttlLease, err := x.Acquire(ctx, "ttl", lock.WithTTL(time.Hour), lock.WithOwner("x"))
	require.NoError(t, err)
	sessLease, err := x.Acquire(ctx, "sess", lock.WithOwner("x"))
	require.NoError(t, err)
	if snapshotFirst {
		require.NoError(t, n.raft.Snapshot().Error())
	}
	waitErrs := make(chan error, 2)
	for _, name := range []string{"ttl", "sess"} {
		go func() {
			_, err := y.Acquire(ctx, name)
			waitErrs <- err
		}()
	}
	waitFor(t, func() bool {
		a, _ := n.Inspect(ctx, "ttl")
		b, _ := n.Inspect(ctx, "sess")
		return a.Waiters == 1 && b.Waiters == 1
	})

	require.NoError(t, n.Abort())
	for range 2 {
		assert.ErrorIs(t, <-waitErrs, lock.ErrClosed)
	}
	assert.ErrorIs(t, sessLease.Err(), lock.ErrLost)

	n2, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n2.Close() })

	a, err := n2.Inspect(ctx, "ttl")
	require.NoError(t, err)
	assert.True(t, a.Held)
	assert.Equal(t, ttlLease.Token(), a.Token)
	assert.Equal(t, "x", a.Owner)
	assert.Equal(t, 1, a.Waiters)
	assert.Greater(t, a.ExpiresIn, 50*time.Minute)
	b, err := n2.Inspect(ctx, "sess")
	require.NoError(t, err)
	assert.True(t, b.Held)
	assert.Equal(t, sessLease.Token(), b.Token)
	assert.Equal(t, 1, b.Waiters)

	fresh, err := n2.Acquire(ctx, "fresh")
	require.NoError(t, err)
	assert.Greater(t, fresh.Token(), max(ttlLease.Token(), sessLease.Token()), "token counter survives")

	// The dead process's sessions expire (re-armed at a full TTL by
	// the restarted leader): the session lease and both queued claims
	// go, the TTL lease stays.
	waitFor(t, func() bool {
		b, err := n2.Inspect(ctx, "sess")
		return err == nil && !b.Held && b.Waiters == 0
	})
	a, err = n2.Inspect(ctx, "ttl")
	require.NoError(t, err)
	assert.True(t, a.Held, "a TTL lease outlives its session")
	assert.Equal(t, 0, a.Waiters)
	next, err := n2.TryAcquire(ctx, "sess")
	require.NoError(t, err)
	assert.Greater(t, next.Token(), fresh.Token())
}
