package node

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// TestNew_CrashDuringRestoreLeavesWritableLog: Raft persists a restored
// snapshot, then empties the log (the store is monotonic). A crash in
// between leaves log/ holding entries that all lie below the snapshot.
// Restarted on that DataDir, the node must still take writes: Raft numbers
// the next entry after the snapshot, which does not follow the log's last
// entry, and a store that refuses it leaves a single node unable to commit
// anything, after every restart.
//
// The crash is simulated with hard links to the segment files taken just
// before the restore: the store only appends to a segment and unlinks it,
// so the links hold the segments as they were when Raft asked to delete
// them.
func TestNew_CrashDuringRestoreLeavesWritableLog(t *testing.T) {
	ctx := testCtx(t)
	old := newNode(t, Config{ID: "old", SessionTTL: time.Hour})
	_, err := old.Acquire(ctx, "report", lock.WithTTL(time.Hour))
	require.NoError(t, err)
	var backup bytes.Buffer
	_, err = old.Snapshot(ctx, &backup)
	require.NoError(t, err)
	require.NoError(t, old.Close())

	dir := t.TempDir()
	n, err := New(Config{DataDir: dir})
	require.NoError(t, err)
	for range 20 {
		l, err := n.Acquire(ctx, "churn", lock.WithTTL(time.Hour))
		require.NoError(t, err)
		require.NoError(t, l.Release(ctx))
	}
	logDir := filepath.Join(dir, "log")
	before, err := filepath.Glob(filepath.Join(logDir, "*.seg"))
	require.NoError(t, err)
	require.NotEmpty(t, before)
	aside := t.TempDir()
	for _, p := range before {
		require.NoError(t, os.Link(p, filepath.Join(aside, filepath.Base(p))))
	}
	require.NoError(t, n.Restore(ctx, &backup))
	require.NoError(t, n.Abort())

	// The crash: the snapshot is on disk, the old segments are not yet
	// deleted, nothing was appended after the restore.
	after, err := filepath.Glob(filepath.Join(logDir, "*.seg"))
	require.NoError(t, err)
	for _, p := range after {
		require.NoError(t, os.Remove(p))
	}
	for _, p := range before {
		require.NoError(t, os.Link(filepath.Join(aside, filepath.Base(p)), p))
	}

	var logs syncBuffer
	n = newNode(t, Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := n.Inspect(wctx, "report")
	require.NoError(t, err, "a read after the restart")
	require.True(t, info.Held, "the restored lease")
	_, err = n.Acquire(wctx, "after", lock.WithTTL(time.Hour))
	require.NoError(t, err, "a write after the restart")
	require.NoError(t, n.Close())
	require.Contains(t, logs.String(), "the log ends below the newest snapshot")
}
