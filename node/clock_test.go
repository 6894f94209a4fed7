package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestCluster_ClockJumps: the wall clock that stamps commands jumps an hour
// forward or back on the leader, between a TTL lease's grant and its
// refresh, and on the node that becomes leader after a crash. Expiry runs on
// the leader's monotonic timers, so no lease may end earlier than its TTL
// after the last refresh was sent (the documented bound: node/DESIGN.md,
// "Time"), the holder still learns first (I3), and Inspect's ExpiresIn
// stays within (0, TTL].
func TestCluster_ClockJumps(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	const ttl = time.Second

	type grant struct {
		lease     lock.Lease
		err       error
		at        time.Time
		holderErr error // the holder's Err when the waiter was granted
	}
	// hold grants name to a TTL lease on node h, queues node w's Acquire
	// behind it and returns the lease, the time the grant was asked for and
	// the waiter's result channel.
	hold := func(name string, h, w *Node) (lock.Lease, time.Time, <-chan grant) {
		asked := time.Now()
		held, err := h.Acquire(ctx, name, lock.WithTTL(ttl))
		require.NoError(t, err)
		got := make(chan grant, 1)
		go func() {
			l, err := w.Acquire(ctx, name)
			got <- grant{lease: l, err: err, at: time.Now(), holderErr: held.Err()}
		}()
		require.Eventually(t, func() bool {
			info, err := w.Inspect(ctx, name)
			return err == nil && info.Waiters == 1
		}, 10*time.Second, 2*time.Millisecond)
		return held, asked, got
	}
	checkInspect := func(name string, token uint64) {
		for i, n := range tc.nodes {
			info, err := n.Inspect(ctx, name)
			require.NoError(t, err)
			assert.True(t, info.Held, "n%d", i+1)
			assert.Equal(t, token, info.Token, "n%d", i+1)
			assert.Positive(t, info.ExpiresIn, "n%d", i+1)
			assert.LessOrEqual(t, info.ExpiresIn, ttl, "n%d", i+1)
		}
	}

	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(fmt.Sprintf("leader%+v", jump), func(t *testing.T) {
			li, leader := tc.leader()
			h, w := tc.nodes[(li+1)%3], tc.nodes[(li+2)%3]
			leader.wallSkew.Store(int64(jump))
			defer leader.wallSkew.Store(0)

			name := fmt.Sprintf("jump%+v", jump)
			held, _, got := hold(name, h, w)
			checkInspect(name, held.Token())
			// The refresh is stamped with the clock jumped back the other way.
			leader.wallSkew.Store(int64(-jump))
			sent := time.Now()
			require.NoError(t, held.Refresh(ctx))
			checkInspect(name, held.Token())

			g := <-got
			require.NoError(t, g.err)
			assert.GreaterOrEqual(t, g.at.Sub(sent), ttl, "expired earlier than the TTL after the last refresh was sent")
			assert.Error(t, g.holderErr, "I3: the holder's lease had ended when the waiter was granted")
			assert.Greater(t, g.lease.Token(), held.Token())
			require.NoError(t, g.lease.Release(ctx))
		})
	}

	t.Run("new leader's clock ahead", func(t *testing.T) {
		li, leader := tc.leader()
		hi, wi := (li+1)%3, (li+2)%3
		held, asked, got := hold("failover", tc.nodes[hi], tc.nodes[wi])
		// Both survivors' clocks run an hour ahead: a successor that trusted
		// the stamps would find the lease an hour overdue.
		tc.nodes[hi].wallSkew.Store(int64(time.Hour))
		tc.nodes[wi].wallSkew.Store(int64(time.Hour))
		killed := time.Now()
		require.NoError(t, leader.Abort())
		tc.nodes[li] = nil

		g := <-got
		require.NoError(t, g.err)
		assert.GreaterOrEqual(t, g.at.Sub(killed), ttl, "the new leader expired the lease before a full TTL from its election")
		assert.Error(t, g.holderErr, "I3")
		assert.Greater(t, g.lease.Token(), held.Token())
		t.Logf("grant asked -> waiter granted after failover: %v (TTL %v)", g.at.Sub(asked).Round(time.Millisecond), ttl)
		require.NoError(t, g.lease.Release(ctx))
	})
}
