package migrate_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/lock"
)

// TestDual_FromEndedWhileWaitingInTo: a Dual Acquire whose grant in from
// ends (its TTL passes) while it waits in to must not hand out a lease once
// to grants it: from may have been granted to an old replica meanwhile, and
// the Dual lease would then be held in one store only, beside the old
// replica (I1, I3), with from's tokens raised only after that replica's
// grant (DESIGN.md, "Tokens": step 4 must run while from is held).
func TestDual_FromEndedWhileWaitingInTo(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, 60*time.Second)
	newCode, err := p.to.Acquire(ctx, "job")
	require.NoError(t, err)

	type result struct {
		le  lock.Lease
		err error
	}
	res := make(chan result, 1)
	go func() {
		le, err := p.l.Acquire(ctx, "job", lock.WithTTL(time.Second))
		res <- result{le, err}
	}()
	eventually(t, 20*time.Second, "the Dual Acquire holds from", func() bool { return !free(t, p.from, "job") })
	eventually(t, 20*time.Second, "its grant in from expires", func() bool { return free(t, p.from, "job") })
	old, err := p.from.Acquire(ctx, "job") // an old replica takes from
	require.NoError(t, err)
	require.NoError(t, newCode.Release(ctx)) // to now grants the Dual Acquire

	// The Dual Acquire must go back to from and wait there behind the old
	// replica, having released its grant in to.
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case r := <-res:
			require.Error(t, r.err, "a Dual lease was handed out while an old replica held the name in from")
			t.Fatalf("the Dual Acquire gave up instead of waiting in from again: %v", r.err)
		default:
		}
		info, err := p.from.Inspect(ctx, "job")
		require.NoError(t, err)
		if info.Waiters == 1 && free(t, p.to, "job") {
			break
		}
		require.False(t, time.Now().After(deadline), "the Dual Acquire did not go back to wait in from")
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, old.Release(ctx))
	r := <-res
	require.NoError(t, r.err, "granted once the old replica released")
	if err := r.le.Release(ctx); err != nil {
		require.ErrorIs(t, err, lock.ErrNotHeld) // its TTL may pass on a loaded machine
	}
}
