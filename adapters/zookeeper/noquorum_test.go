package zookeeper_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// testEndedCtxOnReachableStore (R5): on a reachable server, every call
// whose ctx had ended before it began sends nothing and answers ctx's
// error alone, not ErrNoQuorum.
func testEndedCtxOnReachableStore(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	session, err := l.Acquire(ctx, "ended-ctx-session")
	require.NoError(t, err)
	ttl, err := l.Acquire(ctx, "ended-ctx-ttl", lock.WithTTL(time.Minute))
	require.NoError(t, err)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	calls := []struct {
		what string
		call func() error
	}{
		{"Acquire", func() error { _, err := l.Acquire(ended, "ended-ctx-free"); return err }},
		{"TryAcquire", func() error { _, err := l.TryAcquire(ended, "ended-ctx-free"); return err }},
		{"Inspect", func() error { _, err := l.Inspect(ended, session.Name()); return err }},
		{"Refresh of a session lease", func() error { return session.Refresh(ended) }},
		{"Refresh of a TTL lease", func() error { return ttl.Refresh(ended) }},
		{"Release of a TTL lease", func() error { return ttl.Release(ended) }},
	}
	for _, c := range calls {
		err := c.call()
		assert.ErrorIs(t, err, context.Canceled, c.what)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, c.what+" with an ended ctx on a reachable server")
	}
	require.NoError(t, session.Release(ctx))
}

// testQueuedWaiterEndsInOutage (R5): an Acquire queued behind a holder
// whose ctx ends while the server is paused reports ErrNoQuorum as well as
// ctx's error — its own earlier answers from the server do not make the
// store reachable now.
func testQueuedWaiterEndsInOutage(t *testing.T, z *testserver.ZooKeeper) {
	servers := []string{z.Addr()}
	h := newLocker(t, servers, stableTimeout)
	w := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	const name = "queued-outage"
	holder, err := h.Acquire(ctx, name)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := goCall(func() error {
		le, err := w.Acquire(wctx, name)
		if le != nil {
			_ = le.Release(ctx)
		}
		return err
	})
	eventually(t, 30*time.Second, "the waiter queued", func() bool {
		info, err := h.Inspect(ctx, name)
		return err == nil && info.Waiters == 1
	})
	z.Pause()
	t.Cleanup(z.Resume)
	cancel()
	err = outcome(t, res, time.Minute, "the queued Acquire after its ctx ended")
	z.Resume()
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, lock.ErrNoQuorum, "the server was paused when the queued Acquire's ctx ended")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "a cancelled call")
	// The holder's session lease may have ended during the pause.
	_ = holder.Release(ctx)
}
