package node_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_UnsupportedThroughFollower: ErrUnsupported reaches a caller
// on a follower too, across a forwarded Propose (STATUS_UNSUPPORTED; it
// used to arrive as a bare STATUS_ERROR).
func TestCluster_UnsupportedThroughFollower(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	needs := func(cmd *fsmpb.Command) int {
		if cmd.GetAcquire() != nil {
			return 2
		}
		return 1
	}
	li := c.Leader()
	old, via := (li+1)%3, (li+2)%3
	for i := range c.Size() {
		v := 2
		if i == old {
			v = 1
		}
		node.PlayProtocol(c.Node(i), v, needs)
	}
	l, err := c.NewLocker(ctx, via)
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()
	_, err = l.TryAcquire(ctx, "v2")
	require.ErrorIs(t, err, node.ErrUnsupported)
}
