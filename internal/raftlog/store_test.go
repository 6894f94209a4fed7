package raftlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// entry is the log entry the tests store at index i.
func entry(i uint64) *raft.Log {
	return &raft.Log{
		Index: i, Term: i/10 + 1, Type: raft.LogCommand,
		Data:       fmt.Appendf(nil, "command %d %s", i, make([]byte, i%50)),
		Extensions: fmt.Appendf(nil, "ext%d", i%3),
		AppendedAt: time.Unix(1_700_000_000, int64(i)),
	}
}

func entries(from, to uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, entry(i))
	}
	return ls
}

func open(t *testing.T, dir string, segSize int64) *Store {
	t.Helper()
	s, err := Open(dir, Options{SegmentSize: segSize})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// requireLog checks that s holds exactly entries first to last, each as
// entry() made it.
func requireLog(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	require.NoError(t, err)
	l, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, [2]uint64{first, last}, [2]uint64{f, l}, "first and last index")
	for i := first; i <= last && i != 0; i++ {
		var got raft.Log
		require.NoError(t, s.GetLog(i, &got), "entry %d", i)
		want := entry(i)
		require.Equal(t, want.Index, got.Index)
		require.Equal(t, want.Term, got.Term)
		require.Equal(t, want.Data, got.Data)
		require.Equal(t, want.Extensions, got.Extensions)
		require.True(t, want.AppendedAt.Equal(got.AppendedAt))
	}
	var got raft.Log
	require.ErrorIs(t, s.GetLog(last+1, &got), raft.ErrLogNotFound)
	if first > 1 {
		require.ErrorIs(t, s.GetLog(first-1, &got), raft.ErrLogNotFound)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	require.NoError(t, err)
	return paths
}

// TestStore_AppendsRotatesAndReopens: batches land across several segments
// and read back the same before and after a reopen.
func TestStore_AppendsRotatesAndReopens(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1024)
	requireLog(t, s, 0, 0)
	for from := uint64(1); from <= 200; from += 20 {
		require.NoError(t, s.StoreLogs(entries(from, from+19)))
	}
	require.NoError(t, s.StoreLog(entry(201)))
	requireLog(t, s, 1, 201)
	assert.Greater(t, len(segFiles(t, dir)), 3, "rotated")
	require.NoError(t, s.Close())

	s = open(t, dir, 1024)
	requireLog(t, s, 1, 201)
	n, file := s.Dropped()
	assert.Zero(t, n)
	assert.Empty(t, file)
}

// TestStore_RefusesOutOfOrder: an append must follow the last entry, with
// consecutive indexes; an empty log takes any start.
func TestStore_RefusesOutOfOrder(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	require.NoError(t, s.StoreLogs(entries(50, 52)))
	require.Error(t, s.StoreLogs(entries(54, 55)), "a gap")
	require.Error(t, s.StoreLogs(entries(52, 53)), "an overlap")
	require.Error(t, s.StoreLogs([]*raft.Log{entry(53), entry(55)}), "a gap inside the call")
	require.Error(t, s.StoreLog(&raft.Log{Index: 53, Data: make([]byte, MaxEntry)}), "too large")
	requireLog(t, s, 50, 52)
	require.NoError(t, s.StoreLogs(entries(53, 53)))
	requireLog(t, s, 50, 53)
}

// TestStore_DeleteRange: heads, tails and the whole log, each surviving a
// reopen; a range inside the log is refused.
func TestStore_DeleteRange(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 512)
	for from := uint64(1); from <= 100; from += 10 {
		require.NoError(t, s.StoreLogs(entries(from, from+9)))
	}
	files := len(segFiles(t, dir))

	require.NoError(t, s.DeleteRange(1, 40))
	requireLog(t, s, 41, 100)
	assert.Less(t, len(segFiles(t, dir)), files, "emptied segments deleted")

	require.NoError(t, s.DeleteRange(71, 100))
	requireLog(t, s, 41, 70)
	require.Error(t, s.DeleteRange(50, 60), "inside the log")
	require.NoError(t, s.StoreLogs(entries(71, 80)), "appends after a tail cut")
	requireLog(t, s, 41, 80)
	require.NoError(t, s.Close())

	s = open(t, dir, 512)
	requireLog(t, s, 41, 80)

	require.NoError(t, s.DeleteRange(41, 80))
	requireLog(t, s, 0, 0)
	assert.Empty(t, segFiles(t, dir))
	require.NoError(t, s.StoreLogs(entries(500, 510)), "an empty log starts anywhere")
	require.NoError(t, s.Close())
	s = open(t, dir, 512)
	requireLog(t, s, 500, 510)
}

// cutHead deletes the head of s, the model's log first..last, up to a
// random index, and returns the model's bounds after it (0, 0: empty).
func cutHead(t *testing.T, s *Store, rng *rand.Rand, first, last uint64) (uint64, uint64) {
	t.Helper()
	max := first + rng.Uint64N(last-first+1)
	require.NoError(t, s.DeleteRange(first, max))
	if max == last {
		return 0, 0
	}
	return max + 1, last
}

// cutTail deletes the tail of s, the model's log first..last, from a
// random index, and returns the model's bounds after it (0, 0: empty).
func cutTail(t *testing.T, s *Store, rng *rand.Rand, first, last uint64) (uint64, uint64) {
	t.Helper()
	min := first + rng.Uint64N(last-first+1)
	require.NoError(t, s.DeleteRange(min, last))
	if min == first {
		return 0, 0
	}
	return first, min - 1
}

// TestStore_Model runs random appends, cuts and reopens against a model
// of the log.
func TestStore_Model(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			dir := t.TempDir()
			s := open(t, dir, 700)
			first, last := uint64(0), uint64(0)
			for range 200 {
				switch op := rng.IntN(10); {
				case op < 6:
					next := last + 1
					if first == 0 {
						next = rng.Uint64N(1000) + 1
						first = next
					}
					n := rng.Uint64N(8) + 1
					require.NoError(t, s.StoreLogs(entries(next, next+n-1)))
					last = next + n - 1
				case op < 7 && first != 0:
					first, last = cutHead(t, s, rng, first, last)
				case op < 8 && first != 0:
					first, last = cutTail(t, s, rng, first, last)
				case op < 9:
					require.NoError(t, s.Close())
					s = open(t, dir, 700)
				}
				requireLog(t, s, first, last)
			}
		})
	}
}

// TestStore_InUse: a second Open of the directory fails with ErrInUse
// while the first holds it, and succeeds after Close.
func TestStore_InUse(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	_, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, ErrInUse)
	require.NoError(t, s.Close())
	s2, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

// TestStore_Stable: keys survive a reopen; a key never set is "not
// found", the text raft looks for.
func TestStore_Stable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	_, err := s.GetUint64([]byte("CurrentTerm"))
	require.EqualError(t, err, "not found")
	_, err = s.Get([]byte("LastVoteCand"))
	require.EqualError(t, err, "not found")
	require.NoError(t, s.SetUint64([]byte("CurrentTerm"), 7))
	require.NoError(t, s.Set([]byte("LastVoteCand"), []byte("node-2")))
	require.NoError(t, s.SetUint64([]byte("CurrentTerm"), 8))
	require.NoError(t, s.Close())

	s = open(t, dir, 0)
	term, err := s.GetUint64([]byte("CurrentTerm"))
	require.NoError(t, err)
	assert.Equal(t, uint64(8), term)
	cand, err := s.Get([]byte("LastVoteCand"))
	require.NoError(t, err)
	assert.Equal(t, "node-2", string(cand))
	require.Error(t, s.Set([]byte(saltKey), []byte("12345678")), "the store's own key")
	require.Error(t, s.Set([]byte(firstKey), []byte("12345678")), "the store's own key")
	require.Error(t, s.Set([]byte("big"), make([]byte, maxStable)), "above the cap")
	_, err = s.Get([]byte("big"))
	require.EqualError(t, err, "not found", "a refused Set leaves nothing")
}

// TestStore_ReadsWhileAppending: readers see every entry LastIndex
// reports, whole, while appends and rotations go on (run with -race).
func TestStore_ReadsWhileAppending(t *testing.T) {
	s := open(t, t.TempDir(), 2048)
	require.NoError(t, s.StoreLog(entry(1)))
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				last, _ := s.LastIndex()
				i := rng.Uint64N(last) + 1
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil || l.Index != i || string(l.Data) != string(entry(i).Data) {
					errs <- fmt.Errorf("entry %d: %w (got %d)", i, err, l.Index)
					return
				}
			}
		}()
	}
	for from := uint64(2); from < 400; from += 7 {
		require.NoError(t, s.StoreLogs(entries(from, from+6)))
	}
	close(done)
	for range 4 {
		require.NoError(t, <-errs)
	}
}

// TestStore_AfterClose: every call on a closed store is an error, never a
// panic (LastIndex indexed the released segment list).
func TestStore_AfterClose(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	require.NoError(t, s.StoreLogs(entries(1, 3)))
	require.NoError(t, s.Close())
	_, err := s.LastIndex()
	require.ErrorIs(t, err, errClosed)
	_, err = s.FirstIndex()
	require.ErrorIs(t, err, errClosed)
	var l raft.Log
	require.ErrorIs(t, s.GetLog(2, &l), errClosed)
	require.ErrorIs(t, s.StoreLogs(entries(4, 4)), errClosed)
	require.ErrorIs(t, s.DeleteRange(1, 3), errClosed)
	require.ErrorIs(t, s.Set([]byte("k"), []byte("v")), errClosed)
	_, err = s.Get([]byte("CurrentTerm"))
	require.ErrorIs(t, err, errClosed)
	require.NoError(t, s.Close(), "a second Close")
}

// TestStore_TailCutInsideCall: a tail cut inside what one StoreLogs call
// wrote keeps the entries before it across reopens and appends (a call's
// header counts its entries, so the kept part is written again as a call
// of its own), and leaves no temporary file.
func TestStore_TailCutInsideCall(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	require.NoError(t, s.StoreLogs(entries(1, 4)))
	require.NoError(t, s.StoreLogs(entries(5, 10)))
	require.NoError(t, s.DeleteRange(8, 10))
	requireLog(t, s, 1, 7)
	require.NoError(t, s.Close())
	s = open(t, dir, 0)
	requireLog(t, s, 1, 7)
	require.NoError(t, s.StoreLogs(entries(8, 9)))
	require.NoError(t, s.DeleteRange(3, 9)) // inside the first call
	require.NoError(t, s.StoreLogs(entries(3, 5)))
	require.NoError(t, s.Close())
	s = open(t, dir, 0)
	requireLog(t, s, 1, 5)
	tmp, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	require.NoError(t, err)
	assert.Empty(t, tmp)
	n, _ := s.Dropped()
	assert.Zero(t, n)
}

// A tail cut at a call boundary whose sync fails still leaves the store
// where the file ends: the next append follows the kept entries, and the
// directory opens again with them (before, the store kept the old size and
// appended past a hole, or refused the append).
func TestStore_CutSyncFails(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	require.NoError(t, s.StoreLogs(entries(1, 3)))
	require.NoError(t, s.StoreLogs(entries(4, 6)))

	failed := errors.New("injected sync failure")
	syncFile = func(*os.File) error { return failed }
	err := s.DeleteRange(4, 6)
	syncFile = (*os.File).Sync
	require.ErrorIs(t, err, failed)

	requireLog(t, s, 1, 3)
	require.NoError(t, s.StoreLogs(entries(4, 5)))
	requireLog(t, s, 1, 5)
	require.NoError(t, s.Close())
	requireLog(t, open(t, dir, 1<<20), 1, 5)
}

// A tail cut inside a call rewrites the segment by rename; if the
// directory sync after the rename fails, the store still uses the new
// file: later appends reach the path that Open reads (before, they went
// to the old, unlinked file and were lost at the next Open).
func TestStore_RewriteDirSyncFails(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	require.NoError(t, s.StoreLogs(entries(1, 6)))

	failed := errors.New("injected directory sync failure")
	syncParent = func(string) error { return failed }
	err := s.DeleteRange(4, 6)
	syncParent = syncDir
	require.ErrorIs(t, err, failed)

	requireLog(t, s, 1, 3)
	require.NoError(t, s.StoreLogs(entries(4, 5)))
	require.NoError(t, s.Close())
	requireLog(t, open(t, dir, 1<<20), 1, 5)
}
