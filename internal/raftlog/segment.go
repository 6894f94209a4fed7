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
	calls   []int   // the positions in offsets where a call begins, its header just before
	size    int64   // where the next call goes
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
	calls   []int
	// torn, when >= 0, is where the damaged tail of the file begins: the
	// rest of the last StoreLogs call in the file, which a crash cut short
	// (see the package comment).
	torn int64
}

// scanSegment reads b, a segment whose first entry is base: its header,
// then call by call, every call header and frame intact under the
// directory's salt, the entries consecutive. Damage is ErrCorrupt unless
// it lies in the last call of the last segment (last), which is a torn
// tail: after a damaged frame the file ends where the frame's own call
// header says the call ends (or before); after a damaged call header, no
// intact call header follows anywhere in the file.
func scanSegment(path string, b []byte, base uint64, last bool, salt uint32) (scan, error) {
	s := scan{torn: -1}
	next := base
	// The header was synced before any call was written: damaged, it is
	// the tear of the file's making only if nothing follows it.
	if err := checkSegHeader(b, base, salt); err != nil {
		if !last || len(b) > segHeaderLen {
			return s, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
		}
		s.torn = 0
		return s, nil
	}
	// bad judges damage at off inside the call that starts at start
	// (inCall: its header was intact and counted). A torn call is cut
	// whole: raft was told none of it was stored.
	bad := func(start, off int, what error, later, inCall bool) (scan, error) {
		switch {
		case !last:
			return s, fmt.Errorf("%w: %s at offset %d (entry %d): %w", ErrCorrupt, path, off, next, what)
		case later:
			return s, fmt.Errorf("%w: %s at offset %d (entry %d): %w, and a later call was written after it", ErrCorrupt, path, off, next, what)
		}
		if n := len(s.calls); inCall {
			s.offsets, s.calls = s.offsets[:s.calls[n-1]], s.calls[:n-1]
		}
		s.torn = int64(start)
		return s, nil
	}
	for off := segHeaderLen; off < len(b); {
		c, err := parseCall(b[off:], salt)
		if err != nil {
			return bad(off, off, err, callAfter(b[off+1:], salt), false)
		}
		if c.first != next {
			return s, fmt.Errorf("%w: %s at offset %d: a call of entry %d where %d belongs", ErrCorrupt, path, off, c.first, next)
		}
		end := off + callHeaderLen + c.length
		p := off + callHeaderLen
		s.calls = append(s.calls, len(s.offsets))
		for range c.count {
			f, err := parseFrame(b[p:min(end, len(b))], salt)
			if err == nil && f.log.Index != next {
				return s, fmt.Errorf("%w: %s at offset %d: entry %d where %d belongs", ErrCorrupt, path, p, f.log.Index, next)
			}
			if err != nil {
				// The call's header is intact, so end is where it ends:
				// a torn call was the last write, and nothing can be
				// in the file past it. Anything there, even with its
				// own header damaged too, was written after this call
				// was synced.
				return bad(off, p, err, len(b) > end, true)
			}
			s.offsets = append(s.offsets, int64(p))
			next++
			p += f.size
		}
		if p != end {
			return s, fmt.Errorf("%w: %s at offset %d: a call of %d bytes whose %d entries take %d", ErrCorrupt, path, off, c.length, c.count, p-off-callHeaderLen)
		}
		off = end
	}
	return s, nil
}

// callAfter reports whether b holds an intact call header anywhere, byte
// by byte: a later call, written after the damage before it was synced.
// Each candidate costs one CRC of 16 bytes.
func callAfter(b []byte, salt uint32) bool {
	for i := 0; i+callHeaderLen <= len(b); i++ {
		if _, err := parseCall(b[i:], salt); err == nil {
			return true
		}
	}
	return false
}

// ErrCorrupt is wrapped by Open's errors about a directory whose files are
// not what the store wrote; the error names the file and the damage.
var ErrCorrupt = errors.New("raftlog: corrupt data")
