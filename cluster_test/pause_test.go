package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// TestPausedHolder: the node of a lease's holder stops (pause: its traffic
// frozen, connections kept open) while a waiter on another node queues, and
// stays stopped until after the waiter was granted, so longer than the
// session TTL. On resume the holder's Done must be closed, its fenced write
// with the old token must be rejected, and its node must serve it again.
// Once with the holder on a follower, once on the leader (a deposed leader
// that wakes up believing it still leads).
func TestPausedHolder(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"follower", "leader"} {
		t.Run(where, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			c := newCluster(t, 3)
			li := c.Leader()
			h := (li + 1) % 3
			if where == "leader" {
				h = li
			}
			w := (h + 2) % 3
			if w == li && where == "follower" {
				w = (h + 1) % 3 // the waiter on the other follower
			}
			rec := history.NewRecorder()
			fence := history.NewFence(rec, history.FenceConfig{})
			holderL, err := c.NewLocker(ctx, h)
			require.NoError(t, err)
			waiterL, err := c.NewLocker(ctx, w)
			require.NoError(t, err)

			held, err := rec.Acquire(ctx, 0, holderL, "p")
			require.NoError(t, err)
			require.NoError(t, fence.Write(ctx, 0, "p", held.Token()))

			type grant struct {
				lease     lock.Lease
				err       error
				holderErr error // the holder's Err when the waiter returned
			}
			got := make(chan grant, 1)
			go func() {
				l, err := rec.Acquire(ctx, 1, waiterL, "p")
				got <- grant{l, err, held.Err()}
			}()
			require.Eventually(t, func() bool {
				info, err := c.Node(w).Inspect(ctx, "p")
				return err == nil && info.Waiters == 1
			}, 10*time.Second, 5*time.Millisecond, "waiter queued")

			paused := time.Now()
			c.net.pause(h)
			g := <-got
			require.NoError(t, g.err)
			granted := time.Since(paused)
			assert.Greater(t, g.lease.Token(), held.Token(), "I2")
			require.NoError(t, fence.Write(ctx, 1, "p", g.lease.Token()))
			// Stay stopped a little past the grant: the holder has been
			// away longer than its session TTL.
			time.Sleep(500 * time.Millisecond)
			c.net.resume(h)
			resumed := time.Since(paused)

			// I3 in-process: the node's own timers kept running, so the
			// holder's lease ended before the waiter was granted (on the
			// leader this is what a deposed leader's acknowledgement of
			// its own clients' keep-alives broke); after resuming it must
			// at least be over.
			assert.Error(t, g.holderErr, "I3: the holder's lease had ended when the waiter was granted")
			select {
			case <-held.Done():
			default:
				t.Errorf("holder's Done still open after resume (%v away)", resumed.Round(time.Millisecond))
			}
			assert.False(t, rec.Observe(0, held), "the holder sees its lease ended")
			err = fence.Write(ctx, 0, "p", held.Token())
			assert.ErrorIs(t, err, history.ErrStaleToken, "the fence rejects the paused holder's write")
			t.Logf("pause -> waiter granted %v; resumed after %v; holder's lease: %v",
				granted.Round(time.Millisecond), resumed.Round(time.Millisecond), held.Err())
			figures(t, "pause_of_"+where+"_to_waiter_granted", []time.Duration{granted})

			// The resumed node serves its client again: it queues behind
			// the waiter and is granted on release with a greater token.
			next := make(chan grant, 1)
			go func() {
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				l, err := rec.Acquire(actx, 0, holderL, "p")
				next <- grant{lease: l, err: err}
			}()
			require.Eventually(t, func() bool {
				info, err := c.Node(w).Inspect(ctx, "p")
				return err == nil && info.Waiters == 1
			}, 30*time.Second, 10*time.Millisecond, "the resumed holder queues again")
			require.NoError(t, rec.Release(ctx, 1, g.lease))
			n := <-next
			require.NoError(t, n.err)
			assert.Greater(t, n.lease.Token(), g.lease.Token(), "I2")
			require.NoError(t, fence.Write(ctx, 0, "p", n.lease.Token()))
			require.NoError(t, rec.Release(ctx, 0, n.lease))
			requireHistory(t, rec.History())
		})
	}
}
