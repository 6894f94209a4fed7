package node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// R5: on a healthy node (store reachable, session open) a call whose ctx
// has already ended answers ctx's error alone, never ErrNoQuorum: the
// store was not asked. Acquire and TryAcquire are tried many times since
// the ready-gate wait picked at random between the open gate and the done
// ctx.
func TestNode_EndedCtxOnHealthyStoreIsNotNoQuorum(t *testing.T) {
	n := newNode(t, Config{})
	ctx := testCtx(t)
	le, err := n.Acquire(ctx, "held", lock.WithTTL(time.Minute))
	require.NoError(t, err)
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 100; i++ {
		_, err := n.TryAcquire(dead, "free")
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, lock.ErrNoQuorum, "TryAcquire, run %d", i)
		_, err = n.Acquire(dead, "free")
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, lock.ErrNoQuorum, "Acquire, run %d", i)
	}
	_, err = n.Inspect(dead, "held")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, lock.ErrNoQuorum, "Inspect")
	err = le.Refresh(dead)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, lock.ErrNoQuorum, "Refresh")
	err = le.Release(dead)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, lock.ErrNoQuorum, "Release")
	require.NoError(t, le.Release(ctx))
}
