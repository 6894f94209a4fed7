package node_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
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
	li := c.Leader()
	leader := c.Node(li)
	lagging := (li + 1) % 3
	require.NoError(t, c.Stop(lagging, (*node.Node).Abort))
	var last lock.Lease
	for i := range 50 {
		l, err := leader.Acquire(ctx, fmt.Sprintf("k%d", i%5))
		require.NoError(t, err)
		if i < 45 {
			require.NoError(t, l.Release(ctx))
		}
		last = l
	}
	r := node.RaftOf(leader)
	require.NoError(t, r.Snapshot().Error())
	reloadable := r.ReloadableConfig()
	reloadable.TrailingLogs = 1
	require.NoError(t, r.ReloadConfig(reloadable))
	require.NoError(t, r.Snapshot().Error())

	c.Restart(lagging)
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
