package raftlog

import (
	"encoding/binary"
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

// FuzzScanSegment_Damage: a segment of intact calls (their count and
// sizes from the input) with bytes overwritten or zeroed somewhere. Damage
// before the last call is ErrCorrupt (a later call was synced after it);
// zeros in the last call, or the file cut inside it, are a torn tail that
// keeps every earlier call. The raw target above rarely gets past a
// salted CRC; this one starts from intact calls.
func FuzzScanSegment_Damage(f *testing.F) {
	f.Add([]byte{3, 40, 7}, uint16(100), []byte{0, 0, 0, 0}, false, uint16(0))
	f.Add([]byte{1, 200}, uint16(3), []byte{0xff}, true, uint16(9))
	f.Fuzz(func(t *testing.T, layout []byte, at uint16, junk []byte, zeros bool, cut uint16) {
		if len(layout) == 0 || len(layout) > 16 || len(junk) == 0 {
			return
		}
		img := segHeader(1, testSalt)
		var starts []int
		next := uint64(1)
		for _, l := range layout {
			n := uint64(l%4) + 1
			logs := entries(next, next+n-1)
			for _, lg := range logs {
				lg.Data = append(lg.Data, make([]byte, int(l)*7)...)
			}
			starts = append(starts, len(img))
			var err error
			img, _, err = appendCall(img, nil, logs, testSalt)
			require.NoError(t, err)
			next += n
		}
		lastStart := starts[len(starts)-1]
		b := append([]byte(nil), img...)
		lo := int(at) % len(b)
		hi := min(lo+len(junk), len(b))
		if zeros {
			clear(b[lo:hi])
		} else {
			copy(b[lo:hi], junk)
		}
		if cut > 0 && lo >= lastStart {
			b = b[:max(lastStart, len(b)-int(cut))]
		}
		sc, err := scanSegment("seg", b, 1, true, testSalt)
		switch {
		case string(b) == string(img):
			require.NoError(t, err)
			require.Len(t, sc.offsets, int(next-1))
		case hi <= lastStart:
			require.ErrorIs(t, err, ErrCorrupt, "damage at %d–%d, the last call at %d", lo, hi, lastStart)
		case lo >= lastStart && (zeros || len(b) < len(img)):
			require.NoError(t, err, "damage at %d–%d, the last call at %d", lo, hi, lastStart)
			kept := 0
			for _, c := range layout[:len(layout)-1] {
				kept += int(c%4) + 1
			}
			require.Contains(t, []int{kept, int(next - 1)}, len(sc.offsets))
		case err != nil:
			require.ErrorIs(t, err, ErrCorrupt)
		}
	})
}

// FuzzScanSegment_CallHeader: a call header intact under the salt, its
// length, count and first index whatever the input says, then any bytes:
// the scan never panics, never loops past what the file holds, and keeps
// only intact frames.
func FuzzScanSegment_CallHeader(f *testing.F) {
	f.Add(uint32(41), uint32(1), uint64(1), []byte{}, true)
	f.Add(uint32(1<<32-1), uint32(1<<32-1), uint64(1), []byte{1, 2, 3}, true)
	f.Add(uint32(1<<31), uint32(1<<26), uint64(1), []byte{}, false)
	f.Fuzz(func(t *testing.T, length, count uint32, first uint64, rest []byte, last bool) {
		h := make([]byte, callHeaderLen)
		le := binary.LittleEndian
		le.PutUint32(h, callMagic)
		le.PutUint32(h[8:], length)
		le.PutUint32(h[12:], count)
		le.PutUint64(h[16:], first)
		le.PutUint32(h[4:], checksum(testSalt, h[8:]))
		b := append(append(segHeader(1, testSalt), h...), rest...)
		sc, err := scanSegment("seg", b, 1, last, testSalt)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		require.Empty(t, sc.offsets, "no intact frame in the input")
	})
}
