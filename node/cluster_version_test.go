package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
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

	node.PlayProtocol(c.Node(old), next, acquireNeedsNext)
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

// next is the protocol of a build newer than this one.
const next = fsm.Protocol + 1

// acquireNeedsNext plays a newer build in which Acquire needs protocol
// next. It plays the build after this one, not this one against protocol
// 1: this build's cluster has committed its own level before a test can
// play anything, and a command at or below the committed level is not
// checked against the voters.
func acquireNeedsNext(cmd *fsmpb.Command) int {
	if cmd.GetAcquire() != nil {
		return next
	}
	return fsm.Needs(cmd)
}

// playOneOldVoter makes every node of c a build of protocol next with
// acquireNeedsNext, except node old, which is this build.
func playOneOldVoter(c *testcluster.Cluster, old int) {
	for i := range c.Size() {
		v := next
		if i == old {
			v = fsm.Protocol
		}
		node.PlayProtocol(c.Node(i), v, acquireNeedsNext)
	}
}

// TestCluster_RevokeWaitsForProtocol2: with one voter of a protocol-1
// build (from its start, so the cluster never committed level 2), Revoke
// and Adopt are refused with ErrUnsupported naming it, and nothing enters
// the log; once that voter announces protocol 2 (its next keep-alive), the
// leader commits SetProtocol{2} and Revoke works.
func TestCluster_RevokeWaitsForProtocol2(t *testing.T) {
	const old = 1
	c := testcluster.Start(t, testcluster.Options{Size: 3, Peers: true, Edit: func(i int, cfg *node.Config) {
		if i == old {
			node.PlayProtocolFromStart(cfg, 1, fsm.Needs)
		}
	}})
	ctx := clusterCtx(t)
	holder, err := c.NewLocker(ctx, 0)
	require.NoError(t, err)
	defer func() { assert.NoError(t, holder.Close()) }()
	op, err := c.NewLocker(ctx, 2)
	require.NoError(t, err)
	defer func() { assert.NoError(t, op.Close()) }()
	held, err := holder.Acquire(ctx, "v2", lock.WithTTL(time.Minute))
	require.NoError(t, err)

	err = op.(lock.Revoker).Revoke(ctx, "v2", held.Token())
	require.ErrorIs(t, err, lock.ErrUnsupported)
	require.ErrorIs(t, err, node.ErrUnsupported)
	assert.Contains(t, err.Error(), "speaks 1")
	_, err = op.(lock.Adopter).Adopt(ctx, "v2", held.Token())
	require.ErrorIs(t, err, lock.ErrUnsupported)
	assert.NoError(t, held.Err(), "a refused revoke never entered the log")
	for i := range c.Size() {
		assert.Equal(t, 1, c.Node(i).Stats().Protocol, "n%d", i+1)
	}

	node.PlayProtocol(c.Node(old), 2, fsm.Needs)
	require.Eventually(t, func() bool {
		for i := range c.Size() {
			if c.Node(i).Stats().Protocol != 2 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "the leader commits level 2 once it hears the upgraded voter")
	require.NoError(t, op.(lock.Revoker).Revoke(ctx, "v2", held.Token()))
	assert.ErrorIs(t, held.Err(), lock.ErrRevoked)
}
