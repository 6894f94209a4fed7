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

// TestNoQuorum_NotWhenCtxEndedFirst (R5): on a reachable server, every
// call whose ctx had ended before it began answers ctx's error alone.
func TestNoQuorum_NotWhenCtxEndedFirst(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), 2*time.Second)
	ctx := testCtx(t)
	held := requireEndedCtxAlone(t, l, "nq-ended", "on a reachable server")
	require.NoError(t, held.Release(ctx))
}

// TestNoQuorum_CancelledWhileQueuedInPause (R5): an Acquire queued behind
// a holder, cancelled while the server is stalled, reports ErrNoQuorum and
// context.Canceled — and not context.DeadlineExceeded, although the
// adapter's own timeouts (opTimeout, the probe's) ran out meanwhile.
//
// The stall lasts as long as the cancelled Acquire takes to return: one
// opTimeout for its withdraw, and one more if a retry of the waiter was
// in flight when the server stopped (a loaded machine makes that likely),
// so up to twice opTimeout. The holder's session lease must outlive any
// stall the test lets finish (awaitCall's bound), or its Release rightly
// finds it expired: its SessionTTL is longer than the test's ctx.
func TestNoQuorum_CancelledWhileQueuedInPause(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	holder := newLocker(t, srv.Addr(), time.Minute)
	waiter := newLocker(t, srv.Addr(), 10*time.Second)
	ctx := testCtx(t)
	held, err := holder.Acquire(ctx, "nq-queued-pause")
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan error, 1)
	go func() {
		le, err := waiter.Acquire(wctx, "nq-queued-pause")
		if le != nil {
			_ = le.Release(ctx)
		}
		out <- err
	}()
	waitWaiters(t, holder, "nq-queued-pause", 1)
	srv.Pause()
	defer srv.Resume()
	cancel()
	err = awaitCall(t, out, "the queued Acquire cancelled during the pause")
	srv.Resume()
	require.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, lock.ErrNoQuorum, "the server was stalled when the queued Acquire was cancelled")
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "a cancelled call")
	require.NoError(t, held.Release(ctx))
}
