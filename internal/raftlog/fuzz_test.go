package raftlog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzScanSegment: whatever bytes a segment holds, the scan Open runs
// never panics, and every entry it keeps is an intact frame under its own
// index, in order, before any torn tail it reports.
func FuzzScanSegment(f *testing.F) {
	const salt = 0x5eed
	seed, _, err := appendCall(segHeader(1, salt), nil, entries(1, 3), salt)
	require.NoError(f, err)
	seed, _, err = appendCall(seed, nil, entries(4, 6), salt)
	require.NoError(f, err)
	f.Add(seed, true)
	f.Add(seed[:len(seed)-4], true)
	f.Add(append(seed[:30:30], seed[40:]...), false)
	f.Fuzz(func(t *testing.T, b []byte, last bool) {
		sc, err := scanSegment("seg", b, 1, last, salt)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		end := int64(len(b))
		if sc.torn >= 0 {
			require.True(t, last, "only the last segment has a torn tail")
			require.LessOrEqual(t, sc.torn, end)
			end = sc.torn
		}
		for i, off := range sc.offsets {
			fr, err := parseFrame(b[off:end], salt)
			require.NoError(t, err)
			require.Equal(t, uint64(i+1), fr.log.Index)
			if i+1 < len(sc.offsets) {
				require.LessOrEqual(t, off+int64(fr.size), sc.offsets[i+1], "frames do not overlap")
			} else {
				require.LessOrEqual(t, off+int64(fr.size), end, "the kept frames end before the tail begins")
			}
		}
	})
}
