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
		t.Run(where, func(t *testing.T) { testPausedHolder(t, where) })
	}
}

// pausedHolder is one run of TestPausedHolder: the holder (client 0) on
// node h, the waiter (client 1) on node w, both recorded.
type pausedHolder struct {
	c     *cluster
	where string // "follower" or "leader": the holder's node
	h, w  int
	rec   *history.Recorder
	fence *history.Fence
}

// pausedGrant is what an Acquire of TestPausedHolder returned.
type pausedGrant struct {
	lease     lock.Lease
	err       error
	holderErr error // the holder's Err when the waiter returned
}

func testPausedHolder(t *testing.T, where string) {
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
	p := &pausedHolder{c: c, where: where, h: h, w: w, rec: rec, fence: history.NewFence(rec, history.FenceConfig{})}
	holderL, err := c.NewLocker(ctx, h)
	require.NoError(t, err)
	waiterL, err := c.NewLocker(ctx, w)
	require.NoError(t, err)

	held, err := rec.Acquire(ctx, 0, holderL, "p")
	require.NoError(t, err)
	require.NoError(t, p.fence.Write(ctx, 0, "p", held.Token()))
	g := p.pauseUntilGranted(ctx, t, held, waiterL)
	p.servesAgain(ctx, t, holderL, g.lease)
	requireHistory(t, rec.History())
}

// pauseUntilGranted queues the waiter behind held, pauses the holder's
// node until a little after the waiter was granted, and checks I2, I3 and
// the fence. It returns the waiter's grant.
func (p *pausedHolder) pauseUntilGranted(ctx context.Context, t *testing.T, held lock.Lease, waiterL lock.Locker) pausedGrant {
	t.Helper()
	got := make(chan pausedGrant, 1)
	go func() {
		l, err := p.rec.Acquire(ctx, 1, waiterL, "p")
		got <- pausedGrant{l, err, held.Err()}
	}()
	require.Eventually(t, func() bool {
		info, err := p.c.Node(p.w).Inspect(ctx, "p")
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 5*time.Millisecond, "waiter queued")

	paused := time.Now()
	p.c.net.pause(p.h)
	g := <-got
	require.NoError(t, g.err)
	granted := time.Since(paused)
	assert.Greater(t, g.lease.Token(), held.Token(), "I2")
	require.NoError(t, p.fence.Write(ctx, 1, "p", g.lease.Token()))
	// Not a wait for state: stay stopped a little past the grant, so that
	// the holder has been away longer than its session TTL.
	sleep(ctx, 500*time.Millisecond)
	p.c.net.resume(p.h)
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
	assert.False(t, p.rec.Observe(0, held), "the holder sees its lease ended")
	err := p.fence.Write(ctx, 0, "p", held.Token())
	assert.ErrorIs(t, err, history.ErrStaleToken, "the fence rejects the paused holder's write")
	t.Logf("pause -> waiter granted %v; resumed after %v; holder's lease: %v",
		granted.Round(time.Millisecond), resumed.Round(time.Millisecond), held.Err())
	figures(t, "pause_of_"+p.where+"_to_waiter_granted", []time.Duration{granted})
	return g
}

// servesAgain: the resumed node serves its client again: it queues behind
// the waiter's lease and is granted on its release with a greater token.
func (p *pausedHolder) servesAgain(ctx context.Context, t *testing.T, holderL lock.Locker, waiters lock.Lease) {
	t.Helper()
	next := make(chan pausedGrant, 1)
	go func() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		l, err := p.rec.Acquire(actx, 0, holderL, "p")
		next <- pausedGrant{lease: l, err: err}
	}()
	require.Eventually(t, func() bool {
		info, err := p.c.Node(p.w).Inspect(ctx, "p")
		return err == nil && info.Waiters == 1
	}, 30*time.Second, 10*time.Millisecond, "the resumed holder queues again")
	require.NoError(t, p.rec.Release(ctx, 1, waiters))
	n := <-next
	require.NoError(t, n.err)
	assert.Greater(t, n.lease.Token(), waiters.Token(), "I2")
	require.NoError(t, p.fence.Write(ctx, 0, "p", n.lease.Token()))
	require.NoError(t, p.rec.Release(ctx, 0, n.lease))
}
