package raftlog

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

const testSalt = 0x1234567

// callImage returns a segment (its header, then five calls) under
// testSalt, entries 1–15,
// the calls of sizes that put call boundaries at odd places inside 4 KiB
// pages and the last call across three pages; and where each call starts,
// and how many entries each holds.
func callImage(t *testing.T) (img []byte, starts, counts []int) {
	t.Helper()
	next := uint64(1)
	img = segHeader(1, testSalt)
	for _, c := range []struct{ n, size int }{{3, 100}, {1, 5000}, {4, 700}, {2, 3000}, {5, 1500}} {
		var logs []*raft.Log
		for i := range c.n {
			idx := next + uint64(i)
			logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(idx)}, c.size)})
		}
		starts, counts = append(starts, len(img)), append(counts, c.n)
		var err error
		img, _, err = appendCall(img, nil, logs, testSalt)
		require.NoError(t, err)
		next += uint64(c.n)
	}
	return img, starts, counts
}

// TestScanSegment_CrashPoints: whatever a crash leaves of the last call —
// any prefix of it, or any subset of its 4 KiB pages landed with zeros in
// the others, the file cut at any sector after it — is a torn tail: the
// earlier calls stay whole, the last one is kept whole or cut whole.
func TestScanSegment_CrashPoints(t *testing.T) {
	img, starts, counts := callImage(t)
	lastStart := starts[len(starts)-1]
	kept := 0
	for _, c := range counts[:len(counts)-1] {
		kept += c
	}
	all := kept + counts[len(counts)-1]
	for end := lastStart; end <= len(img); end++ {
		sc, err := scanSegment("seg", img[:end], 1, true, testSalt)
		require.NoError(t, err, "a prefix of %d bytes", end)
		if end == len(img) {
			require.Len(t, sc.offsets, all)
			continue
		}
		require.Len(t, sc.offsets, kept, "a prefix of %d bytes", end)
		if end > lastStart {
			require.Equal(t, int64(lastStart), sc.torn, "a prefix of %d bytes", end)
		}
	}

	first, last := lastStart/4096, (len(img)-1)/4096
	pages := last - first + 1
	require.GreaterOrEqual(t, pages, 3)
	for landed := range 1 << pages {
		b := bytes.Clone(img)
		for p := range pages {
			if landed&(1<<p) == 0 {
				clear(b[max((first+p)*4096, lastStart):min((first+p+1)*4096, len(b))])
			}
		}
		for size := lastStart; size <= len(b); size += 512 {
			sc, err := scanSegment("seg", b[:size], 1, true, testSalt)
			require.NoError(t, err, "pages %b landed, %d bytes", landed, size)
			if len(sc.offsets) != all {
				require.Len(t, sc.offsets, kept, "pages %b landed, %d bytes", landed, size)
			}
		}
	}
}

// TestScanSegment_DamageBeforeLastCall: damage to a call that a later call
// followed — a byte flipped, or 512 bytes read back as zeros (a bad
// sector, here also across a call boundary) — is ErrCorrupt, never a
// torn tail that cuts the calls after it: they were synced, and raft was
// told they were stored. A crash cannot damage a call with a later call
// after it.
func TestScanSegment_DamageBeforeLastCall(t *testing.T) {
	img, starts, _ := callImage(t)
	lastStart := starts[len(starts)-1]
	for off := range lastStart {
		b := bytes.Clone(img)
		b[off] ^= 0x40
		_, err := scanSegment("seg", b, 1, true, testSalt)
		require.ErrorIs(t, err, ErrCorrupt, "a byte flipped at %d", off)
	}
	for lo := 0; lo < lastStart; lo += 64 {
		b := bytes.Clone(img)
		clear(b[lo:min(lo+512, len(b))])
		sc, err := scanSegment("seg", b, 1, true, testSalt)
		require.ErrorIs(t, err, ErrCorrupt, "zeros at %d–%d, calls at %v: %d entries kept", lo, lo+512, starts, len(sc.offsets))
	}
}
