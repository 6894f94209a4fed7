package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_NewCommandWaitsForEveryVoter: with one voter still on an
// older build, the leader refuses a command of the newer protocol
// (nothing enters the log); once that voter announces the newer protocol
// (on its next keep-alive), the command goes through.
func TestCluster_NewCommandWaitsForEveryVoter(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	old := c.Follower()
	playOneOldVoter(c, old)
	l, err := c.NewLocker(ctx, c.Leader())
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()
	_, err = l.TryAcquire(ctx, "v2")
	require.ErrorIs(t, err, node.ErrUnsupported)
	info, err := l.Inspect(ctx, "v2")
	require.NoError(t, err)
	require.False(t, info.Held, "a refused command never entered the log")

	node.PlayProtocol(c.Node(old), 2, acquireNeedsV2)
	var lastErr error
	require.Eventually(t, func() bool {
		lease, err := l.TryAcquire(ctx, "v2")
		lastErr = err
		if err != nil {
			return false
		}
		require.NoError(t, lease.Release(ctx))
		return true
	}, 15*time.Second, 50*time.Millisecond, "the upgraded voter is heard on its next keep-alive")
	assert.NoError(t, lastErr)
}

// TestCluster_UnsupportedThroughFollower: ErrUnsupported reaches a caller
// on a follower too, across a forwarded Propose (STATUS_UNSUPPORTED; it
// used to arrive as a bare STATUS_ERROR).
func TestCluster_UnsupportedThroughFollower(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	li := c.Leader()
	old, via := (li+1)%3, (li+2)%3
	playOneOldVoter(c, old)
	l, err := c.NewLocker(ctx, via)
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()
	_, err = l.TryAcquire(ctx, "v2")
	require.ErrorIs(t, err, node.ErrUnsupported)
}

// acquireNeedsV2 plays a newer build in which Acquire needs protocol 2.
func acquireNeedsV2(cmd *fsmpb.Command) int {
	if cmd.GetAcquire() != nil {
		return 2
	}
	return 1
}

// playOneOldVoter makes every node of c a protocol-2 build with
// acquireNeedsV2, except node old, which speaks protocol 1.
func playOneOldVoter(c *testcluster.Cluster, old int) {
	for i := range c.Size() {
		v := 2
		if i == old {
			v = 1
		}
		node.PlayProtocol(c.Node(i), v, acquireNeedsV2)
	}
}
