package node_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_RestartAfterSnapshotCatchUp: a follower that caught up by
// InstallSnapshot keeps its old log prefix (raft compacts with
// TrailingLogs, a BoltStore is not monotonic): its log has a gap below the
// snapshot. The start-up check of the DataDir took that gap for damage and
// refused to restart the healthy follower (ErrCorruptData, log entry N:
// log not found).
func TestCluster_RestartAfterSnapshotCatchUp(t *testing.T) {
	ctx := clusterCtx(t)
	c := startCluster(t, 3, true)
	lagging, last := catchUpFromSnapshot(ctx, t, c)
	n := c.Node(lagging)
	info, err := n.Inspect(ctx, last.Name())
	require.NoError(t, err)
	require.True(t, info.Held)
	require.NotZero(t, n.Stats().SnapshotRestores)

	require.NoError(t, c.Stop(lagging, (*node.Node).Abort))
	c.Restart(lagging)
	info, err = c.Node(lagging).Inspect(ctx, last.Name())
	require.NoError(t, err)
	require.True(t, info.Held, "the restarted follower serves its state")
}
