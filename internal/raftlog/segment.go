package raftlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const segSuffix = ".seg"

// segment is one segment file: the index of its first entry and the offset
// of every entry's frame in it.
type segment struct {
	base    uint64
	path    string
	file    *os.File
	offsets []int64 // offsets[i]: the frame of entry base+i
	size    int64   // where the next frame goes
}

func (s *segment) last() uint64 { return s.base + uint64(len(s.offsets)) - 1 }

func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// listSegments returns the bases of dir's segment files, in order. Names
// ending in .seg that are not 20 digits are damage.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok {
			continue
		}
		base, err := strconv.ParseUint(name, 10, 64)
		if err != nil || len(name) != 20 || e.IsDir() {
			return nil, fmt.Errorf("%w: %s: not a segment file's name", ErrCorrupt, filepath.Join(dir, e.Name()))
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// scan is what reading a segment file found.
type scan struct {
	offsets []int64
	// torn, when >= 0, is where the damaged tail of the file begins: a
	// frame that does not decode with no intact frame of a later
	// StoreLogs call after it.
	torn int64
}

// scanSegment reads the frames of b, a segment whose first entry is base,
// checking each one's CRC and index. A damaged frame is ErrCorrupt unless
// it is the torn tail of the last call (see the package comment), which
// only the last segment may have (last).
func scanSegment(path string, b []byte, base uint64, last bool) (scan, error) {
	s := scan{torn: -1}
	next := base
	for off := 0; off < len(b); {
		f, err := parseFrame(b[off:])
		if err == nil && f.log.Index != next {
			return s, fmt.Errorf("%w: %s at offset %d: entry %d where %d belongs", ErrCorrupt, path, off, f.log.Index, next)
		}
		if err != nil {
			if !last {
				return s, fmt.Errorf("%w: %s at offset %d (entry %d): %w", ErrCorrupt, path, off, next, err)
			}
			if later, ok := laterCall(b[off+1:], next); ok {
				return s, fmt.Errorf("%w: %s at offset %d (entry %d): %w, and entry %d was written after it by a later call", ErrCorrupt, path, off, next, err, later)
			}
			s.torn = int64(off)
			return s, nil
		}
		s.offsets = append(s.offsets, int64(off))
		next++
		off += f.size
	}
	return s, nil
}

// laterCall looks in b, byte by byte, for an intact frame written by a
// StoreLogs call later than the one that wrote entry next (its batchFirst
// above next), and returns that frame's index.
func laterCall(b []byte, next uint64) (uint64, bool) {
	for i := range b {
		if len(b)-i < headerLen {
			return 0, false
		}
		f, err := parseFrame(b[i:])
		if err == nil && f.batchFirst > next {
			return f.log.Index, true
		}
	}
	return 0, false
}

// ErrCorrupt is wrapped by Open's errors about a directory whose files are
// not what the store wrote; the error names the file and the damage.
var ErrCorrupt = errors.New("raftlog: corrupt data")
