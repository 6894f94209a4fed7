package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_FloorTokenThroughFollower: a FloorToken made through a
// follower raises the tokens of the grants that another node's Locker
// gets afterwards, immediate or handed over, and of the other names too
// (the store keeps one floor).
func TestCluster_FloorTokenThroughFollower(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	li := c.Leader()
	via, other := (li+1)%3, (li+2)%3
	fl, err := c.NewLocker(ctx, via)
	require.NoError(t, err)
	defer func() { assert.NoError(t, fl.Close()) }()
	al, err := c.NewLocker(ctx, other)
	require.NoError(t, err)
	defer func() { assert.NoError(t, al.Close()) }()
	const floor = uint64(1) << 40

	require.NoError(t, fl.(lock.TokenFloorer).FloorToken(ctx, "fenced", floor))
	first, err := al.Acquire(ctx, "fenced")
	require.NoError(t, err)
	assert.Equal(t, floor+1, first.Token(), "the first grant after the floor")

	// A waiter at the leader, handed the name by the release.
	ll, err := c.NewLocker(ctx, li)
	require.NoError(t, err)
	defer func() { assert.NoError(t, ll.Close()) }()
	got := make(chan lock.Lease, 1)
	go func() {
		l, err := ll.Acquire(ctx, "fenced", lock.WithTTL(time.Minute))
		assert.NoError(t, err)
		got <- l
	}()
	require.Eventually(t, func() bool {
		info, err := al.Inspect(ctx, "fenced")
		return err == nil && info.Waiters == 1
	}, 15*time.Second, 10*time.Millisecond, "the second Acquire queues")
	require.NoError(t, first.Release(ctx))
	second := <-got
	require.NotNil(t, second)
	assert.Equal(t, floor+2, second.Token(), "a hand-off passes the floor too, though its index is far below it")
	info, err := fl.Inspect(ctx, "fenced")
	require.NoError(t, err)
	assert.Equal(t, floor+2, info.Token)
	require.NoError(t, second.Release(ctx))

	other1, err := al.Acquire(ctx, "never-floored")
	require.NoError(t, err)
	assert.Equal(t, floor+3, other1.Token(), "other names are raised too, after the floored name's grants")
	require.NoError(t, other1.Release(ctx))

	// The Node's own FloorToken, and a floor below the tokens in use: nil,
	// and nothing lowers.
	require.NoError(t, c.Node(other).FloorToken(ctx, "fenced", 5))
	third, err := al.Acquire(ctx, "fenced")
	require.NoError(t, err)
	assert.Equal(t, floor+4, third.Token())
	require.NoError(t, third.Release(ctx))
}

// TestNode_FloorTokenValidates: a bad name or floor is refused before any
// I/O, whatever the cluster could answer.
func TestNode_FloorTokenValidates(t *testing.T) {
	n, err := node.New(node.Config{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, n.Close()) }()
	ctx := clusterCtx(t)
	assert.ErrorIs(t, n.FloorToken(ctx, "x", lock.MaxTokenFloor+1), lock.ErrInvalidOption)
	assert.ErrorIs(t, n.FloorToken(ctx, "", 1), lock.ErrInvalidName)
	require.NoError(t, n.FloorToken(ctx, "x", lock.MaxTokenFloor))
	l, err := n.TryAcquire(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, uint64(lock.MaxTokenFloor)+1, l.Token())
	require.NoError(t, l.Release(ctx))
}

// TestCluster_FloorTokenWaitsForProtocol4: with one voter of a protocol-3
// build (from its start, so the cluster never committed level 4),
// FloorToken is refused with ErrUnsupported naming it, and nothing enters
// the log; once that voter announces protocol 4, the leader commits
// SetProtocol{4} and FloorToken works.
func TestCluster_FloorTokenWaitsForProtocol4(t *testing.T) {
	const old = 1
	c := testcluster.Start(t, testcluster.Options{Size: 3, Peers: true, Edit: func(i int, cfg *node.Config) {
		if i == old {
			node.PlayProtocolFromStart(cfg, 3, fsm.Needs)
		}
	}})
	ctx := clusterCtx(t)
	op, err := c.NewLocker(ctx, 2)
	require.NoError(t, err)
	defer func() { assert.NoError(t, op.Close()) }()
	const floor = uint64(1) << 40

	err = op.(lock.TokenFloorer).FloorToken(ctx, "v4", floor)
	require.ErrorIs(t, err, lock.ErrUnsupported)
	require.ErrorIs(t, err, node.ErrUnsupported)
	assert.Contains(t, err.Error(), "speaks 3")
	for i := range c.Size() {
		assert.Equal(t, 3, c.Node(i).Stats().Protocol, "n%d", i+1)
	}
	l, err := op.TryAcquire(ctx, "v4")
	require.NoError(t, err)
	assert.Less(t, l.Token(), floor, "a refused floor never entered the log")
	require.NoError(t, l.Release(ctx))

	node.PlayProtocol(c.Node(old), 4, fsm.Needs)
	require.Eventually(t, func() bool {
		for i := range c.Size() {
			if c.Node(i).Stats().Protocol != 4 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "the leader commits level 4 once it hears the upgraded voter")
	require.NoError(t, op.(lock.TokenFloorer).FloorToken(ctx, "v4", floor))
	l, err = op.TryAcquire(ctx, "v4")
	require.NoError(t, err)
	assert.Equal(t, floor+1, l.Token())
	require.NoError(t, l.Release(ctx))
}
