package raftlog

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeBatches writes entries 1–90 in calls of 10 into segments of 2 KiB
// (a call starts a new one once the last passed 2 KiB: three calls each),
// and a term, and returns the directory and its segment files, oldest
// first.
func writeBatches(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentSize: 2048})
	require.NoError(t, err)
	require.NoError(t, s.SetUint64([]byte("CurrentTerm"), 3))
	for from := uint64(1); from <= 90; from += 10 {
		require.NoError(t, s.StoreLogs(entries(from, from+9)))
	}
	require.NoError(t, s.Close())
	files := segFiles(t, dir)
	require.Len(t, files, 3)
	return dir, files
}

// frameAt returns the offset of the frame of entry index in the segment
// file path whose first entry is base.
func frameAt(t *testing.T, path string, base, index uint64) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sc, err := scanSegment(path, b, base, true, saltOf(t, filepath.Dir(path)))
	require.NoError(t, err)
	return sc.offsets[index-base]
}

// saltOf reads the salt of the store in dir.
func saltOf(t *testing.T, dir string) uint32 {
	t.Helper()
	st, err := openStable(dir, true)
	require.NoError(t, err)
	salt, ok := st.uint64(saltKey)
	require.True(t, ok)
	return uint32(salt)
}

func baseOf(t *testing.T, path string) uint64 {
	t.Helper()
	bases, err := listSegments(filepath.Dir(path))
	require.NoError(t, err)
	for _, b := range bases {
		if filepath.Join(filepath.Dir(path), segName(b)) == path {
			return b
		}
	}
	t.Fatalf("%s is not a segment", path)
	return 0
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Close()) }()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// TestOpen_TornTail: what a crash can leave of the last call — cut short,
// padded with zeros, a damaged frame with later frames of the same call
// intact — is cut off whole (raft was told none of it was stored) and
// reported; the entries before it stay, and appends continue from there.
func TestOpen_TornTail(t *testing.T) {
	cases := []struct {
		what   string
		damage func(t *testing.T, path string, base uint64)
		last   uint64
	}{{
		what: "cut inside the last frame",
		damage: func(t *testing.T, path string, base uint64) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()-3))
		},
		last: 80,
	}, {
		what: "cut inside the last call's first frame",
		damage: func(t *testing.T, path string, base uint64) {
			require.NoError(t, os.Truncate(path, frameAt(t, path, base, 81)+5))
		},
		last: 80,
	}, {
		what: "the last call's pages zeros, its size kept",
		damage: func(t *testing.T, path string, base uint64) {
			off := frameAt(t, path, base, 81)
			fi, err := os.Stat(path)
			require.NoError(t, err)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(make([]byte, fi.Size()-off), off)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		},
		last: 80,
	}, {
		what: "a frame of the last call damaged, later ones of that call intact",
		damage: func(t *testing.T, path string, base uint64) {
			flip(t, path, frameAt(t, path, base, 85)+headerLen+3)
		},
		last: 80,
	}}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			dir, files := writeBatches(t)
			path := files[len(files)-1]
			base := baseOf(t, path)
			require.Equal(t, uint64(61), base)
			c.damage(t, path, base)

			s := open(t, dir, 2048)
			requireLog(t, s, 1, c.last)
			n, file := s.Dropped()
			assert.Positive(t, n)
			assert.Equal(t, path, file)
			require.NoError(t, s.StoreLogs(entries(c.last+1, c.last+5)))
			require.NoError(t, s.Close())
			s = open(t, dir, 2048)
			requireLog(t, s, 1, c.last+5)
			n, _ = s.Dropped()
			assert.Zero(t, n, "the cut was made durable")
		})
	}
}

// TestOpen_Corrupt: damage to what the store had synced is refused with
// ErrCorrupt naming the file, never cut away or read as entries.
func TestOpen_Corrupt(t *testing.T) {
	cases := []struct {
		what   string
		damage func(t *testing.T, dir string, files []string) string
		want   string
	}{{
		what: "a frame of an earlier call in the last segment, a later call after it",
		damage: func(t *testing.T, dir string, files []string) string {
			path := files[len(files)-1]
			base := baseOf(t, path)
			require.Equal(t, uint64(61), base)
			flip(t, path, frameAt(t, path, base, base)+headerLen+1)
			return path
		},
		want: "a later call was written after it",
	}, {
		what: "a frame in a segment that is not the last",
		damage: func(t *testing.T, dir string, files []string) string {
			flip(t, files[0], frameAt(t, files[0], 1, 3)+2)
			return files[0]
		},
		want: "offset",
	}, {
		what: "a segment that is not the last cut short",
		damage: func(t *testing.T, dir string, files []string) string {
			require.NoError(t, os.Truncate(files[0], frameAt(t, files[0], 1, 5)+7))
			return files[0]
		},
		want: "a header is 12",
	}, {
		what: "a segment in the middle deleted",
		damage: func(t *testing.T, dir string, files []string) string {
			require.NoError(t, os.Remove(files[1]))
			return files[2]
		},
		want: "the segment before it ends at",
	}, {
		what: "the stable file deleted",
		damage: func(t *testing.T, dir string, files []string) string {
			path := filepath.Join(dir, stableFile)
			require.NoError(t, os.Remove(path))
			return path
		},
		want: "is missing",
	}, {
		what: "the stable file damaged",
		damage: func(t *testing.T, dir string, files []string) string {
			path := filepath.Join(dir, stableFile)
			flip(t, path, 9)
			return path
		},
		want: "CRC mismatch",
	}, {
		// Every header then fails its CRC: with one segment, a torn-tail
		// rule alone would have cut the whole log.
		what: "the stable file of another store",
		damage: func(t *testing.T, dir string, files []string) string {
			other, _ := writeBatches(t)
			b, err := os.ReadFile(filepath.Join(other, stableFile))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, stableFile), b, 0o600))
			for _, f := range files[:2] { // one segment left: the last
				require.NoError(t, os.Remove(f))
			}
			return files[2]
		},
		want: "the stable file is another store's",
	}, {
		what: "a file named like a segment that is not one",
		damage: func(t *testing.T, dir string, files []string) string {
			path := filepath.Join(dir, "12"+segSuffix)
			require.NoError(t, os.WriteFile(path, nil, 0o600))
			return path
		},
		want: "not a segment file's name",
	}, {
		what: "a segment renamed to another first index",
		damage: func(t *testing.T, dir string, files []string) string {
			to := filepath.Join(dir, segName(1000))
			require.NoError(t, os.Rename(files[len(files)-1], to))
			return to
		},
		want: "starts at entry 1000",
	}}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			dir, files := writeBatches(t)
			file := c.damage(t, dir, files)
			s, err := Open(dir, Options{SegmentSize: 2048})
			if err == nil {
				_ = s.Close()
				t.Fatal("opened a damaged directory")
			}
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), file)
			assert.Contains(t, err.Error(), c.want)
			s, err = Open(dir, Options{LockTimeout: 1}) // the failed Open let go of the lock
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Nil(t, s)
		})
	}
}

// TestOpen_TornSegmentHeader: a crash while a new segment's header was
// being written leaves a last segment of at most a header's bytes, which
// Open drops; the log before it stays and appends go on.
func TestOpen_TornSegmentHeader(t *testing.T) {
	dir, _ := writeBatches(t)
	path := filepath.Join(dir, segName(91))
	require.NoError(t, os.WriteFile(path, segHeader(91, 0)[:10], 0o600))
	s := open(t, dir, 2048)
	requireLog(t, s, 1, 90)
	require.NoError(t, s.StoreLogs(entries(91, 95)))
	requireLog(t, s, 1, 95)
}

// TestGetLog_ChecksCRC: a byte flipped under an open store is an error on
// read, never a wrong entry.
func TestGetLog_ChecksCRC(t *testing.T) {
	dir, files := writeBatches(t)
	s := open(t, dir, 2048)
	flip(t, files[0], frameAt(t, files[0], 1, 2)+headerLen+fixedBody+1)
	var l raft.Log
	require.ErrorIs(t, s.GetLog(2, &l), ErrCorrupt)
	require.NoError(t, s.GetLog(3, &l))
}

// TestOpen_TornTailWithFrameInData: a torn write is a torn write whatever
// the entries carry. An entry's data is what a client sent (a lease's
// owner is up to 64 KiB of any bytes), so it can hold the image of a whole
// call — here even one made with the directory's own salt, which a client
// does not know; a crash that cuts the call short after that image must
// still be cut as a torn tail, not refused as damage to synced data (the
// node would not start again). Before call headers, Open looked for a
// later call by trying every byte after the tear and found the image.
func TestOpen_TornTailWithFrameInData(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	require.NoError(t, s.StoreLogs(entries(1, 3)))
	forged, _, err := appendCall(nil, nil, []*raft.Log{{Index: 1 << 40, Term: 1, Type: raft.LogCommand}}, s.salt)
	require.NoError(t, err)
	data := append(append([]byte("owner:"), forged...), make([]byte, 100)...)
	require.NoError(t, s.StoreLogs([]*raft.Log{{Index: 4, Term: 1, Type: raft.LogCommand, Data: data}}))
	require.NoError(t, s.Close())

	// The crash: the call's last bytes did not reach the disk.
	path := segFiles(t, dir)[0]
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, fi.Size()-50))

	s, err = Open(dir, Options{})
	require.NoError(t, err, "a torn write whose entry holds a call's image")
	t.Cleanup(func() { _ = s.Close() })
	requireLog(t, s, 1, 3)
}

// TestOpen_DamagedCallHeader: a call header that does not decode is a torn
// tail when nothing intact follows it, and damage when a later call does.
func TestOpen_DamagedCallHeader(t *testing.T) {
	dir, files := writeBatches(t)
	path := files[len(files)-1]
	base := baseOf(t, path)
	// The header of the call of 81–90, the last one, sits just before
	// entry 81's frame; of 71–80 before 71's.
	flip(t, path, frameAt(t, path, base, 81)-callHeaderLen+10)
	s := open(t, dir, 2048)
	requireLog(t, s, 1, 80)
	require.NoError(t, s.Close())

	dir, files = writeBatches(t)
	path = files[len(files)-1]
	flip(t, path, frameAt(t, path, base, 71)-callHeaderLen+10)
	_, err := Open(dir, Options{})
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "a later call was written after it")
}

// TestOpen_DamageAcrossCallBoundary: 512 bytes of zeros (a bad sector)
// over the end of one synced call and the header of the next, with more
// calls after them in the same segment, is ErrCorrupt and leaves the file
// as it was — not a torn tail that cuts every call after the damage.
func TestOpen_DamageAcrossCallBoundary(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 0)
	for from := uint64(1); from <= 50; from += 5 {
		require.NoError(t, s.StoreLogs(entries(from, from+4)))
	}
	require.NoError(t, s.Close())
	path := segFiles(t, dir)[0]
	boundary := frameAt(t, path, 1, 11) - callHeaderLen // where the call of 11–15 begins
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 512), boundary-200)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	s, err = Open(dir, Options{})
	if err == nil {
		last, _ := s.LastIndex()
		_ = s.Close()
		t.Fatalf("opened with entries up to %d of 50", last)
	}
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), path)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the refused segment is left as it was")
}

// TestOpen_StableFileOfAnotherDirectory: a stable file from another
// directory (its salt another) beside the segments makes every call look
// damaged. That is ErrCorrupt, naming the cause, and the segments stay:
// a wrong salt must never pass for a torn tail, or Open would cut — and
// delete — the whole log. With the directory's own stable file back, the
// log is all there.
func TestOpen_StableFileOfAnotherDirectory(t *testing.T) {
	for _, segSize := range []int64{0, 1024} { // one segment; several
		t.Run(fmt.Sprint(segSize), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, segSize)
			for from := uint64(1); from <= 50; from += 5 {
				require.NoError(t, s.StoreLogs(entries(from, from+4)))
			}
			require.NoError(t, s.Close())
			other := t.TempDir()
			require.NoError(t, open(t, other, 0).Close())
			own, err := os.ReadFile(filepath.Join(dir, stableFile))
			require.NoError(t, err)
			foreign, err := os.ReadFile(filepath.Join(other, stableFile))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, stableFile), foreign, 0o600))
			segs := segFiles(t, dir)

			s, err = Open(dir, Options{SegmentSize: segSize})
			if err == nil {
				last, _ := s.LastIndex()
				n, _ := s.Dropped()
				_ = s.Close()
				t.Fatalf("opened under another directory's salt: %d entries left, %d bytes cut", last, n)
			}
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Equal(t, segs, segFiles(t, dir), "no segment removed")

			require.NoError(t, os.WriteFile(filepath.Join(dir, stableFile), own, 0o600))
			s = open(t, dir, segSize)
			requireLog(t, s, 1, 50)
		})
	}
}
