package raftlog

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// failDirSync makes every directory sync after a rename or removal fail
// until the test ends or the returned func is called.
func failDirSync(t *testing.T) (restore func(), failed error) {
	failed = errors.New("injected directory sync failure")
	syncParent = func(string) error { return failed }
	restore = func() { syncParent = syncDir }
	t.Cleanup(restore)
	return restore, failed
}

// A head truncation that deletes a segment but whose directory sync then
// fails leaves a store whose first index is inside the log: reads of the
// deleted head answer ErrLogNotFound (before, FirstIndex still named the
// deleted segment's first entry, and GetLog of it indexed the next segment
// with a negative position and panicked).
func TestStore_HeadDropDirSyncFails(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1) // one call per segment
	require.NoError(t, s.StoreLogs(entries(1, 3)))
	require.NoError(t, s.StoreLogs(entries(4, 6)))

	restore, failed := failDirSync(t)
	require.ErrorIs(t, s.DeleteRange(1, 4), failed)
	restore()

	requireLog(t, s, 4, 6)
	require.NoError(t, s.DeleteRange(1, 4))
	requireLog(t, s, 5, 6)
	require.NoError(t, s.Close())
	requireLog(t, open(t, dir, 1), 5, 6)
}

// Deleting the whole log, when the last segment's removal is not synced,
// leaves an empty store (before, LastIndex panicked on a store with a
// first index and no segment).
func TestStore_TailDropDirSyncFails(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1)
	require.NoError(t, s.StoreLogs(entries(1, 3)))

	restore, failed := failDirSync(t)
	require.ErrorIs(t, s.DeleteRange(1, 3), failed)
	restore()

	requireLog(t, s, 0, 0)
	require.NoError(t, s.StoreLogs(entries(7, 8)))
	requireLog(t, s, 7, 8)
}

// After a rename or removal whose directory sync failed, no append is
// acknowledged until a directory sync succeeds: fdatasync of the segment
// does not make its name durable, so a crash could bring back the old
// segment without the acknowledged entries (after a rewrite), or a
// deleted segment that no longer follows the log (after a removal; the
// segment before it takes appends when the store reopened with a larger
// SegmentSize).
func TestStore_AppendWaitsForDirSync(t *testing.T) {
	const size = 1 << 20
	for name, setup := range map[string]func(*testing.T, string) (*Store, error){
		"rewrite": func(t *testing.T, dir string) (*Store, error) {
			s := open(t, dir, size)
			require.NoError(t, s.StoreLogs(entries(1, 6)))
			return s, s.DeleteRange(4, 6) // inside the call: rewritten by rename
		},
		"removal": func(t *testing.T, dir string) (*Store, error) {
			s := open(t, dir, 1) // one call per segment
			require.NoError(t, s.StoreLogs(entries(1, 3)))
			require.NoError(t, s.StoreLogs(entries(4, 6)))
			require.NoError(t, s.Close())
			s = open(t, dir, size)
			return s, s.DeleteRange(4, 6) // the second segment, removed
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			restore, failed := failDirSync(t)
			s, err := setup(t, dir)
			require.ErrorIs(t, err, failed)
			requireLog(t, s, 1, 3)

			require.ErrorIs(t, s.StoreLogs(entries(4, 5)), failed, "its segment's name not durable: refused")
			requireLog(t, s, 1, 3)
			restore()
			require.NoError(t, s.StoreLogs(entries(4, 5)))
			requireLog(t, s, 1, 5)
			require.NoError(t, s.Close())
			requireLog(t, open(t, dir, size), 1, 5)
		})
	}
}
