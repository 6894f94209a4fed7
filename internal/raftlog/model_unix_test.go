//go:build unix

package raftlog

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStore_ModelWithCrashesAndFailedWrites: random appends of mostly
// small calls, head and tail cuts, reopens, writes that fail part way
// (the process's file size limit), and crashes that tear the last call at
// any byte, against a model of the log.
func TestStore_ModelWithCrashesAndFailedWrites(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := t.TempDir()
			const segSize = 900
			s := open(t, dir, segSize)
			first, last := uint64(0), uint64(0)
			prevLast := uint64(0) // the last index before the last append; 0: no append since
			for range 300 {
				appended := false
				switch op := rng.IntN(20); {
				case op < 11: // append
					next := last + 1
					if first == 0 {
						next = rng.Uint64N(1000) + 1
					}
					n := rng.Uint64N(3) + 1
					if rng.IntN(8) == 0 {
						n += rng.Uint64N(20)
					}
					require.NoError(t, s.StoreLogs(entries(next, next+n-1)))
					prevLast, appended = last, true
					if first == 0 {
						first, prevLast = next, 0
					}
					last = next + n - 1
				case op < 13: // a write that fails part way
					// Only into the last segment: opening a new one
					// writes to the test log, which the limit would fail.
					if first == 0 || s.segs[len(s.segs)-1].size >= segSize {
						break
					}
					logs := entries(last+1, last+rng.Uint64N(10)+1)
					call, _, err := appendCall(nil, nil, logs, s.salt)
					require.NoError(t, err)
					limit := uint64(s.segs[len(s.segs)-1].size) + rng.Uint64N(uint64(len(call)))
					err = withFileSizeLimit(t, limit, func() error { return s.StoreLogs(logs) })
					require.Error(t, err, "a write past the file size limit")
				case op < 14 && first != 0: // head
					first, last = cutHead(t, s, rng, first, last)
				case op < 16 && first != 0: // tail
					first, last = cutTail(t, s, rng, first, last)
				case op < 18:
					require.NoError(t, s.Close())
					s = open(t, dir, segSize)
				default: // a crash tearing the last append
					require.NoError(t, s.Close())
					if first != 0 && prevLast != 0 && prevLast >= first {
						tearLast(t, dir, rng)
						last = prevLast
					}
					s = open(t, dir, segSize)
				}
				if !appended {
					prevLast = 0
				}
				requireLog(t, s, first, last)
			}
			tmp, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
			require.NoError(t, err)
			require.Empty(t, tmp)
		})
	}
}

// tearLast cuts the newest segment of dir inside its last call, at a
// random byte, as a crash during that call's write may leave it.
func tearLast(t *testing.T, dir string, rng *rand.Rand) {
	t.Helper()
	files := segFiles(t, dir)
	path := files[len(files)-1]
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sc, err := scanSegment(path, b, baseOf(t, path), true, saltOf(t, dir))
	require.NoError(t, err)
	require.Equal(t, int64(-1), sc.torn)
	start := sc.offsets[sc.calls[len(sc.calls)-1]] - callHeaderLen
	require.NoError(t, os.Truncate(path, start+rng.Int64N(int64(len(b))-start)))
}

// withFileSizeLimit runs f with the process's file size limit at limit
// bytes (writes past it fail; Go ignores SIGXFSZ).
func withFileSizeLimit(t *testing.T, limit uint64, f func() error) error {
	t.Helper()
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}))
	defer func() { require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)) }()
	return f()
}
