package node

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestNode_LimitsRefuseGrowth: each cap refuses the call that would grow
// the state past it with lock.ErrLimit, changes nothing, and lets the same
// call through once the state has shrunk.
func TestNode_LimitsRefuseGrowth(t *testing.T) {
	ctx := testCtx(t)
	n := newNode(t, Config{Limits: Limits{Sessions: 3, Names: 3, NamesPerSession: 2, WaitersPerName: 1}})

	// Sessions: the node's own Locker and two more.
	a, err := n.NewLocker(ctx)
	require.NoError(t, err)
	b, err := n.NewLocker(ctx)
	require.NoError(t, err)
	_, err = n.NewLocker(ctx)
	require.ErrorIs(t, err, lock.ErrLimit, "a fourth session")

	// Names per session: a holds x and y.
	x, err := a.Acquire(ctx, "x")
	require.NoError(t, err)
	y, err := a.Acquire(ctx, "y")
	require.NoError(t, err)
	_, err = a.TryAcquire(ctx, "z")
	require.ErrorIs(t, err, lock.ErrLimit, "a's third name")

	// Waiters per name: b waits on x; the node's own Locker may not.
	waited := make(chan error, 1)
	go func() {
		l, err := b.Acquire(ctx, "x")
		if err == nil {
			err = l.Release(ctx)
		}
		waited <- err
	}()
	waitFor(t, func() bool {
		info, err := n.Inspect(ctx, "x")
		return err == nil && info.Waiters == 1
	})
	_, err = n.Acquire(ctx, "x")
	require.ErrorIs(t, err, lock.ErrLimit, "a second waiter on x")
	_, err = n.TryAcquire(ctx, "x")
	require.ErrorIs(t, err, lock.ErrHeld, "TryAcquire does not queue: only ErrHeld")

	// Names: x and y, then w makes three; v is one too many.
	w, err := n.Acquire(ctx, "w")
	require.NoError(t, err)
	_, err = b.TryAcquire(ctx, "v")
	require.ErrorIs(t, err, lock.ErrLimit, "a fourth name")

	info, err := n.Inspect(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, 1, info.Waiters, "the refused Acquire left nothing queued")
	for _, name := range []string{"z", "v"} {
		info, err := n.Inspect(ctx, name)
		require.NoError(t, err)
		assert.False(t, info.Held, "%s was refused, not granted", name)
	}

	// Shrinking the state lets the same calls through.
	require.NoError(t, y.Release(ctx))
	v, err := b.TryAcquire(ctx, "v")
	require.NoError(t, err, "a name freed by a Release")
	require.NoError(t, x.Release(ctx))
	require.NoError(t, <-waited)
	require.NoError(t, v.Release(ctx))
	require.NoError(t, w.Release(ctx))
	require.NoError(t, b.Close())
	c, err := n.NewLocker(ctx)
	require.NoError(t, err, "a session freed by a Close")
	require.NoError(t, c.Close())
	require.NoError(t, a.Close())
}

func TestConfig_LimitsDefaultsAndNegative(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultLimits, cfg.Limits)
	cfg, err = Config{Limits: Limits{Names: 7}}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 7, cfg.Limits.Names)
	assert.Equal(t, DefaultLimits.WaitersPerName, cfg.Limits.WaitersPerName)
	_, err = Config{Limits: Limits{WaitersPerName: -1}}.withDefaults()
	assert.ErrorIs(t, err, ErrInvalidConfig)
}
