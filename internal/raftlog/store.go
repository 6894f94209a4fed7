package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Options tunes a Store; zero fields take the defaults.
type Options struct {
	// SegmentSize is the size past which the next StoreLogs call starts a
	// new segment file. Default DefaultSegmentSize.
	SegmentSize int64
	// LockTimeout bounds the wait for another process's lock on the
	// directory. Default one second.
	LockTimeout time.Duration
}

// DefaultSegmentSize is Options.SegmentSize's default.
const DefaultSegmentSize = 16 << 20

// ErrInUse is Open's error when another Store holds the directory.
var ErrInUse = errors.New("raftlog: directory in use")

var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)

// Store is the log and stable store of one directory (the package comment).
// It is safe for concurrent use: raft stores from one goroutine and reads
// from several.
type Store struct {
	dir     string
	segSize int64
	unlock  func() error

	// wmu serialises the calls that change the store (StoreLogs,
	// DeleteRange, Set, Close); mu guards what readers see, and is held
	// for writing only to publish a change, so that reads go on while a
	// StoreLogs call waits for its fdatasync.
	wmu    sync.Mutex
	mu     sync.RWMutex
	segs   []*segment // in index order; the last one takes appends
	first  uint64     // 0: empty
	buf    []byte     // StoreLogs' frames, reused
	rel    []int64    // and their offsets in buf
	salt   uint32     // seeds every CRC (frame.go)
	stable *stable
	closed bool
	// unsynced: a segment was renamed or removed, and the directory
	// sync after it failed. The next StoreLogs syncs the directory
	// before it writes: fdatasync of a segment does not make its name
	// durable, and a crash could bring back the old segment without the
	// entries appended since, or a deleted one that no longer follows
	// the log.
	unsynced bool

	dropped int64 // bytes of a torn tail Open cut
	torn    string
}

// Open opens (creating it if need be) the store in dir.
func Open(dir string, opts Options) (_ *Store, err error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil { // the directory itself, if new
		return nil, err
	}
	unlock, err := lockDir(filepath.Join(dir, "lock"), opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, segSize: opts.SegmentSize, unlock: unlock}
	defer func() {
		if err != nil {
			_ = s.closeFiles()
		}
	}()
	bases, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if s.stable, err = openStable(dir, len(bases) > 0); err != nil {
		return nil, err
	}
	salt, _ := s.stable.uint64(saltKey) // openStable checked it is there
	s.salt = uint32(salt)
	for i, base := range bases {
		if err := s.load(base, i == len(bases)-1); err != nil {
			return nil, err
		}
	}
	if n := len(s.segs); n > 0 && len(s.segs[n-1].offsets) == 0 {
		// A tail segment with no entry: created by a call that a crash
		// cut short, or torn to nothing. Nothing to keep.
		if err := s.dropSegment(n - 1); err != nil {
			return nil, err
		}
	}
	if len(s.segs) > 0 {
		s.first = s.segs[0].base
		if f, ok := s.stable.uint64(firstKey); ok && f > s.first && f <= s.lastLocked() {
			s.first = f
		}
	}
	return s, nil
}

// load reads segment base and appends it to s.segs; last says it is the
// newest one, whose torn tail it cuts.
func (s *Store) load(base uint64, last bool) error {
	path := filepath.Join(s.dir, segName(base))
	if n := len(s.segs); n > 0 && s.segs[n-1].last()+1 != base {
		return fmt.Errorf("%w: %s: starts at entry %d, the segment before it ends at %d", ErrCorrupt, path, base, s.segs[n-1].last())
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	seg := &segment{base: base, path: path, file: f}
	s.segs = append(s.segs, seg)
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("raftlog: read %s: %w", path, err)
	}
	sc, err := scanSegment(path, b, base, last, s.salt)
	if err != nil {
		return err
	}
	seg.offsets, seg.calls, seg.size = sc.offsets, sc.calls, int64(len(b))
	if len(sc.offsets) == 0 && !last {
		return fmt.Errorf("%w: %s: no entry in a segment that is not the last", ErrCorrupt, path)
	}
	if sc.torn >= 0 {
		if err := f.Truncate(sc.torn); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		s.dropped, s.torn, seg.size = int64(len(b))-sc.torn, path, sc.torn
	}
	return nil
}

// Dropped reports the torn tail Open cut: its length in bytes and the
// file, or 0 and "" when there was none.
func (s *Store) Dropped() (int64, string) { return s.dropped, s.torn }

// IsMonotonic tells raft to clear the log after installing a snapshot
// rather than leave a gap in it.
func (s *Store) IsMonotonic() bool { return true }

// FirstIndex is the first entry's index, 0 for an empty log.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errClosed
	}
	return s.first, nil
}

// LastIndex is the last entry's index, 0 for an empty log.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errClosed
	}
	return s.lastLocked(), nil
}

func (s *Store) lastLocked() uint64 {
	if s.first == 0 {
		return 0
	}
	return s.segs[len(s.segs)-1].last()
}

// GetLog reads entry index, checking its frame's CRC.
func (s *Store) GetLog(index uint64, l *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	if s.first == 0 || index < s.first || index > s.lastLocked() {
		return raft.ErrLogNotFound
	}
	seg := s.segs[s.find(index)]
	i := index - seg.base
	off := seg.offsets[i]
	end := seg.size
	if i+1 < uint64(len(seg.offsets)) {
		end = seg.offsets[i+1]
	}
	b := make([]byte, end-off)
	if _, err := seg.file.ReadAt(b, off); err != nil {
		return fmt.Errorf("raftlog: read entry %d from %s: %w", index, seg.path, err)
	}
	f, err := parseFrame(b, s.salt)
	if err == nil && f.log.Index != index {
		err = fmt.Errorf("entry %d where %d belongs", f.log.Index, index)
	}
	if err != nil {
		return fmt.Errorf("%w: %s at offset %d: %w", ErrCorrupt, seg.path, off, err)
	}
	*l = f.log
	return nil
}

// find returns the position in s.segs of the segment holding index, which
// is in the log.
func (s *Store) find(index uint64) int {
	lo, hi := 0, len(s.segs)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if s.segs[mid].base <= index {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// StoreLog stores one entry.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends logs, which must follow the last entry (or start
// anywhere in an empty log) with consecutive indexes, in one write and one
// fdatasync.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errClosed
	}
	next := logs[0].Index
	if last := s.lastLocked(); s.first != 0 && next != last+1 {
		return fmt.Errorf("raftlog: entry %d does not follow the last entry %d", next, last)
	}
	if next == 0 {
		return errors.New("raftlog: entry 0")
	}
	for i, l := range logs {
		if l.Index != next+uint64(i) {
			return fmt.Errorf("raftlog: entry %d where %d belongs", l.Index, next+uint64(i))
		}
	}
	buf, rel, err := appendCall(s.buf[:0], s.rel[:0], logs, s.salt)
	if err != nil {
		return err
	}
	s.buf, s.rel = buf, rel
	if s.unsynced {
		if err := syncParent(s.dir); err != nil {
			return err
		}
		s.unsynced = false
	}
	seg, err := s.tail(next)
	if err != nil {
		return err
	}
	if _, err := seg.file.WriteAt(buf, seg.size); err != nil {
		return s.failedWrite(seg, err)
	}
	if err := fdatasync(seg.file); err != nil {
		return s.failedWrite(seg, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seg.calls = append(seg.calls, len(seg.offsets))
	for _, r := range rel {
		seg.offsets = append(seg.offsets, seg.size+r)
	}
	seg.size += int64(len(buf))
	if s.first == 0 {
		s.first = next
	}
	return nil
}

// failedWrite cuts what a failed write may have left past the segment's
// last entry, so that the next call writes where the log ends.
func (s *Store) failedWrite(seg *segment, err error) error {
	if terr := seg.file.Truncate(seg.size); terr != nil {
		return errors.Join(err, terr)
	}
	// Synced, so that a crash cannot bring back a write raft was told
	// failed.
	return errors.Join(err, seg.file.Sync())
}

// tail returns the segment to append entry next to, starting a new one
// when the log is empty or the last one is full.
func (s *Store) tail(next uint64) (*segment, error) {
	if n := len(s.segs); n > 0 {
		seg := s.segs[n-1]
		switch {
		case len(seg.offsets) == 0 && seg.base != next:
			// Left empty by a failed write into an empty log.
			s.mu.Lock()
			err := s.dropSegment(n - 1)
			s.mu.Unlock()
			if err != nil {
				return nil, err
			}
		case seg.size < s.segSize:
			return seg, nil
		}
	}
	path := filepath.Join(s.dir, segName(next))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	// The header, synced before any call, binds the file to this store's
	// salt: damage to it is never taken for a torn write (scanSegment).
	_, err = f.Write(segHeader(next, s.salt))
	if err == nil {
		err = fdatasync(f)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	seg := &segment{base: next, path: path, file: f, size: segHeaderLen}
	s.mu.Lock()
	s.segs = append(s.segs, seg)
	s.mu.Unlock()
	return seg, nil
}

// DeleteRange deletes entries min to max: a head of the log (min at or
// below the first entry) or its tail (max at or above the last).
func (s *Store) DeleteRange(min, max uint64) error {
	defer s.changing()()
	if s.closed {
		return errClosed
	}
	last := s.lastLocked()
	switch {
	case s.first == 0 || min > max || max < s.first || min > last:
		return nil
	case min <= s.first && max >= last:
		return s.truncateTail(0) // all of it
	case min <= s.first:
		return s.truncateHead(max)
	case max >= last:
		return s.truncateTail(min)
	default:
		return fmt.Errorf("raftlog: DeleteRange(%d, %d) inside the log %d–%d: only a head or a tail", min, max, s.first, last)
	}
}

// truncateHead drops entries up to max, deleting the segments it empties,
// oldest first, so that a crash leaves a log that starts later. Where max
// falls inside a segment, the new first index is recorded in the stable
// file (firstKey), so that the dropped entries stay dropped after a
// restart.
func (s *Store) truncateHead(max uint64) error {
	for len(s.segs) > 1 && s.segs[0].last() <= max {
		if err := s.dropSegment(0); err != nil {
			return err
		}
	}
	s.first = max + 1
	if s.segs[0].base == s.first {
		return nil
	}
	return s.stable.set([]byte(firstKey), binary.BigEndian.AppendUint64(nil, s.first))
}

// truncateTail drops entries from min on: later segments are deleted,
// newest first, so that a crash leaves a log that ends earlier, then the
// segment holding min is cut and synced (or deleted if min is its first).
// min 0 deletes every segment.
func (s *Store) truncateTail(min uint64) error {
	if min <= s.first {
		// All of it: forget the recorded first index before the files,
		// so that a crash between shows entries again rather than a first
		// index past them.
		if err := s.stable.remove([]byte(firstKey)); err != nil {
			return err
		}
	}
	for n := len(s.segs); n > 0 && s.segs[n-1].base >= min; n = len(s.segs) {
		if err := s.dropSegment(n - 1); err != nil {
			return err
		}
	}
	if len(s.segs) == 0 {
		s.first = 0
		return nil
	}
	seg := s.segs[len(s.segs)-1]
	keep := int(min - seg.base)
	if keep >= len(seg.offsets) {
		return nil
	}
	c := len(seg.calls) - 1
	for seg.calls[c] > keep {
		c--
	}
	if seg.calls[c] == keep {
		return s.cutAt(seg, keep, c)
	}
	return s.rewriteCall(seg, keep, c)
}

// cutAt cuts seg where call c, which begins with entry position keep,
// begins, and syncs it: a crash leaves the segment whole or cut.
func (s *Store) cutAt(seg *segment, keep, c int) error {
	size := seg.offsets[keep] - callHeaderLen
	if err := seg.file.Truncate(size); err != nil {
		return err
	}
	// The file is cut now, in the page cache at least: the segment must
	// say so even if the sync fails, or the next append would write past
	// a hole of zeros that Open refuses. (Until a sync succeeds, a crash
	// may bring the cut entries back: as if the failed DeleteRange had
	// not been made, which is what its error told raft.)
	seg.offsets, seg.calls, seg.size = seg.offsets[:keep], seg.calls[:c], size
	return syncFile(seg.file)
}

// syncFile syncs a cut segment; a test replaces it to make it fail.
var syncFile = (*os.File).Sync

// rewriteCall keeps the entries of seg before position keep, which falls
// inside call c: a call header counts its entries, so the kept part of
// call c is written again as a call of its own. The segment is rewritten
// into a new file that replaces it by rename, so that a crash leaves the
// old segment or the new one, never one without the kept entries (which
// raft may have counted for a commit).
func (s *Store) rewriteCall(seg *segment, keep, c int) error {
	start := seg.offsets[seg.calls[c]] - callHeaderLen
	b := make([]byte, seg.size)
	if _, err := seg.file.ReadAt(b, 0); err != nil {
		return fmt.Errorf("raftlog: read %s: %w", seg.path, err)
	}
	var kept []*raft.Log
	for i := seg.calls[c]; i < keep; i++ {
		f, err := parseFrame(b[seg.offsets[i]:], s.salt)
		if err != nil {
			return fmt.Errorf("%w: %s at offset %d: %w", ErrCorrupt, seg.path, seg.offsets[i], err)
		}
		kept = append(kept, &f.log)
	}
	out, rel, err := appendCall(b[:start:start], nil, kept, s.salt)
	if err != nil {
		return err
	}
	f, err := replaceFile(seg.path, out)
	if f == nil {
		return err // the old segment is still in place
	}
	s.unsynced = err != nil
	// Renamed: the path is the new file now, whether or not the directory
	// sync after it failed (err), so the segment must use it; appends
	// through the old, unlinked file would be lost at the next Open.
	_ = seg.file.Close() // replaced: nothing written through it is lost
	seg.file = f
	seg.offsets = seg.offsets[:seg.calls[c]]
	seg.offsets = append(seg.offsets, rel...) // offsets in out, which begins with the segment's kept calls
	seg.calls, seg.size = seg.calls[:c+1], int64(len(out))
	return err
}

// syncParent syncs a directory after a rename or a removal; a test
// replaces it to make it fail.
var syncParent = syncDir

// replaceFile writes b to a new file, syncs it, renames it over path,
// syncs the directory and returns the new file open for reading and
// writing. Once the rename is made it returns the new file even if the
// directory sync fails (with that error): the path names it either way.
func replaceFile(path string, b []byte) (*os.File, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	return f, syncParent(filepath.Dir(path))
}

// dropSegment closes and deletes s.segs[i], the first or the last; mu is
// held. Once the file is removed the store goes on without it, even if
// the directory sync after the removal fails (then StoreLogs syncs it
// first): the first index stays inside the log.
func (s *Store) dropSegment(i int) error {
	seg := s.segs[i]
	if err := os.Remove(seg.path); err != nil {
		return err // still open and listed: the store stays usable
	}
	_ = seg.file.Close() // removed: nothing to lose
	s.segs = append(s.segs[:i], s.segs[i+1:]...)
	switch {
	case len(s.segs) == 0:
		s.first = 0
	case i == 0:
		s.first = max(s.first, s.segs[0].base)
	}
	if err := syncParent(s.dir); err != nil {
		s.unsynced = true
		return err
	}
	return nil
}

// changing takes both locks for a change made in one go (DeleteRange,
// Set, Close), and returns their release.
func (s *Store) changing() (unlock func()) {
	s.wmu.Lock()
	s.mu.Lock()
	return func() {
		s.mu.Unlock()
		s.wmu.Unlock()
	}
}

// Close closes the files and releases the directory.
func (s *Store) Close() error {
	defer s.changing()()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeFiles()
}

func (s *Store) closeFiles() error {
	var errs []error
	for _, seg := range s.segs {
		errs = append(errs, seg.file.Close())
	}
	s.segs = nil
	errs = append(errs, s.unlock())
	return errors.Join(errs...)
}

var errClosed = errors.New("raftlog: store closed")

// syncDir makes the creation, renaming or removal of files in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
