package node

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestNode_RestoreAppliesBarrier: a linearizable read right after Restore
// answers without waiting for another write. Without the barrier after
// the restore, the node's applied index stayed below the commit index
// (Raft's no-op never reaches the bridge) and the read waited for the
// next write: here the expiry of the restored session, an hour later.
func TestNode_RestoreAppliesBarrier(t *testing.T) {
	ctx := testCtx(t)
	old := newNode(t, Config{ID: "old", SessionTTL: time.Hour})
	_, err := old.Acquire(ctx, "report", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	var backup bytes.Buffer
	_, err = old.Snapshot(ctx, &backup)
	require.NoError(t, err)

	fresh := newNode(t, Config{ID: "fresh"})
	require.NoError(t, fresh.Restore(ctx, &backup))
	info, err := fresh.Inspect(ctx, "report")
	require.NoError(t, err, "a read after the restore")
	require.True(t, info.Held)
}
