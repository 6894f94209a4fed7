package raftlog

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStore_CutAtEveryPosition: a tail cut at every entry of a log of
// calls of one to five entries over small segments keeps the entries
// before it through an append, a reopen and a second cut.
func TestStore_CutAtEveryPosition(t *testing.T) {
	const last = 40
	for at := uint64(1); at <= last; at++ {
		dir := t.TempDir()
		s := open(t, dir, 600)
		next := uint64(1)
		for n := uint64(1); next <= last; n = n%5 + 1 {
			to := min(next+n-1, last)
			require.NoError(t, s.StoreLogs(entries(next, to)))
			next = to + 1
		}
		require.NoError(t, s.DeleteRange(at, last))
		if at == 1 {
			requireLog(t, s, 0, 0)
			continue
		}
		requireLog(t, s, 1, at-1)
		require.NoError(t, s.StoreLogs(entries(at, at+2)))
		require.NoError(t, s.Close())
		s = open(t, dir, 600)
		requireLog(t, s, 1, at+2)
		if at > 2 {
			require.NoError(t, s.DeleteRange(at-1, at+2))
			require.NoError(t, s.Close())
			s = open(t, dir, 600)
			requireLog(t, s, 1, at-2)
		}
		require.NoError(t, s.Close())
	}
}

// TestOpen_LeftoverTemporaryFiles: what a crash inside a rewrite or a Set
// leaves — a segment's or the stable file's .tmp, whole or cut short — is
// no segment and no stable file: Open reads the log and keys as they were,
// and the next rewrite replaces the leftover.
func TestOpen_LeftoverTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	require.NoError(t, s.SetUint64([]byte("CurrentTerm"), 4))
	require.NoError(t, s.StoreLogs(entries(1, 10)))
	require.NoError(t, s.Close())
	seg := segFiles(t, dir)[0]
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(seg+".tmp", b[:len(b)/2], 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, segName(11)+".tmp"), b, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, stableFile+".tmp"), []byte("junk"), 0o600))

	s = open(t, dir, 0)
	requireLog(t, s, 1, 10)
	term, err := s.GetUint64([]byte("CurrentTerm"))
	require.NoError(t, err)
	require.Equal(t, uint64(4), term)
	require.NoError(t, s.DeleteRange(6, 10)) // a rewrite through seg's .tmp
	require.NoError(t, s.Close())
	s = open(t, dir, 0)
	requireLog(t, s, 1, 5)
	_, err = os.Stat(seg + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist, "renamed over the segment")
}
