package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// R5: retry tells an attempt that the store answered (committed, but ctx
// ended while this node applied up to it) from one it did not (a forward
// in flight, no leader): only the latter is ErrNoQuorum. A follower a few
// milliseconds behind made a queued Acquire cancelled just after its commit
// report ErrNoQuorum on a healthy cluster (the conformance suite's
// AcquireCanceled).
func TestNode_RetryNoQuorumOnlyWhenUnreached(t *testing.T) {
	n := newNode(t, Config{})
	for _, tc := range []struct {
		what     string
		attempts []func(ctx context.Context) error // the last one ends ctx
		noQuorum bool
		onlyCut  bool // ErrNoQuorum marked errOnlyCutShort
	}{
		{"committed, not yet applied here", []func(ctx context.Context) error{func(ctx context.Context) error {
			return n.waitAppliedHere(ctx, n.raft.AppliedIndex()+1000)
		}}, false, false},
		{"ctx ended before it was sent", []func(ctx context.Context) error{func(ctx context.Context) error { return ctx.Err() }}, false, false},
		{"forward in flight", []func(ctx context.Context) error{cutShort}, true, true},
		{"no leader", []func(ctx context.Context) error{func(context.Context) error { return errNotLeader }}, true, false},
		{"no leader, then a forward in flight", []func(ctx context.Context) error{
			func(context.Context) error { return errNotLeader }, cutShort,
		}, true, false},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		i := 0
		err := n.retry(ctx, func() error {
			attempt := tc.attempts[i]
			if i++; i == len(tc.attempts) {
				cancel()
			}
			return attempt(ctx)
		})
		require.ErrorIs(t, err, context.Canceled, tc.what)
		if tc.noQuorum {
			require.ErrorIs(t, err, lock.ErrNoQuorum, tc.what)
		} else {
			require.NotErrorIs(t, err, lock.ErrNoQuorum, tc.what)
		}
		assert.Equal(t, tc.onlyCut, errors.Is(err, errOnlyCutShort), tc.what)
	}
}

// cutShort is what callAt returns for a forward that ctx ended in flight.
func cutShort(ctx context.Context) error {
	return fmt.Errorf("%w: %w: %w", errAmbiguous, errCutShort, ctx.Err())
}
