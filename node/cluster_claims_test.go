package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/node"
)

// Cluster tests of claims a caller gave up: they must never stay behind
// in the store while the session that made them lives.

// TestCluster_CancelledAcquireOutlivesPartition: an Acquire queued through
// a follower is cancelled while that follower is cut off for longer than
// the clean-up's synchronous wait (5 s) but shorter than the session TTL
// (20 s). The Cancel cannot commit before Acquire returns; it must go on
// in the background and commit once the partition heals, while the
// waiter's session lives on. Before, the clean-up gave up after 5 s and
// the claim stayed queued: when the holder released, the name went to the
// abandoned claim, held by nobody and kept alive by the session's
// keep-alives until that Locker closed.
func TestCluster_CancelledAcquireOutlivesPartition(t *testing.T) {
	const ttl = 20 * time.Second
	ctx, cancelAll := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelAll()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = ttl
	}})
	li := c.Leader()
	fi := (li + 1) % 3
	oi := (li + 2) % 3

	holder, err := c.NewLocker(ctx, li)
	require.NoError(t, err)
	held, err := holder.Acquire(ctx, "orphan")
	require.NoError(t, err)

	waiting, err := c.NewLocker(ctx, fi)
	require.NoError(t, err)
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	res := make(chan error, 1)
	go func() {
		_, err := waiting.Acquire(actx, "orphan")
		res <- err
	}()
	// Queued, and the follower applied the QUEUED result: the Acquire
	// waits for its grant, so cancelling it takes the Cancel path.
	queued := func(i int) func() bool {
		return func() bool {
			info, err := c.Node(i).InspectLocal("orphan")
			return err == nil && info.Waiters == 1
		}
	}
	require.Eventually(t, queued(li), 20*time.Second, 5*time.Millisecond)
	require.Eventually(t, queued(fi), 20*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return node.QueuedClaims(waiting) == 1 },
		20*time.Second, 5*time.Millisecond)

	cut.Isolate(fi)
	start := time.Now()
	acancel()
	require.ErrorIs(t, <-res, context.Canceled)
	t.Logf("cancelled Acquire returned after %v", time.Since(start))
	cut.Reconnect(fi)

	// The claim goes once the follower is back: exact, however long that
	// takes (the session lives on: 20 s TTL, renewed again after the heal).
	require.Eventually(t, func() bool {
		info, err := c.Node(oi).Inspect(ctx, "orphan")
		return err == nil && info.Waiters == 0
	}, ttl, 20*time.Millisecond, "the cancelled claim stays queued")
	require.NoError(t, held.Release(ctx))
	info, err := c.Node(oi).Inspect(ctx, "orphan")
	require.NoError(t, err)
	assert.False(t, info.Held, "released with nobody waiting: free")
	l, err := waiting.TryAcquire(ctx, "orphan")
	require.NoError(t, err, "the waiter's Locker and session still work")
	require.NoError(t, l.Release(ctx))
}

// TestCluster_ReopenToBlackHoledLeader: a session reopen that goes to a
// leader which stopped answering (connections open, nothing comes back)
// must give up and try again, not wait for an answer forever with the
// Locker's calls waiting for the session behind it. The reopen had no
// deadline: its RPC waited until TCP gave up, which on a black hole it
// never does.
func TestCluster_ReopenToBlackHoledLeader(t *testing.T) {
	const ttl = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cut := newCutNet()
	c := testcluster.Start(t, testcluster.Options{Size: 3, Net: cut, Edit: func(_ int, cfg *node.Config) {
		cfg.SessionTTL = ttl
	}})
	li := c.Leader()
	fi := (li + 1) % 3
	l, err := c.NewLocker(ctx, fi) // its session was opened through the leader: a connection exists
	require.NoError(t, err)

	cut.blackhole(li)
	node.SignalLost(l) // at once, before the follower notices the leader is gone
	actx, acancel := context.WithTimeout(ctx, 40*time.Second)
	defer acancel()
	lease, err := l.TryAcquire(actx, "after-reopen")
	require.NoError(t, err, "the Locker got a new session from the next leader")
	require.NoError(t, lease.Release(ctx))
	require.NoError(t, l.Close())
}
