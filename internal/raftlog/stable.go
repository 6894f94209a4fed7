package raftlog

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	stableFile  = "stable"
	stableMagic = 0x74734c51 // "QLst", little endian
	maxStable   = 1 << 20    // raft keeps three small keys
)

// saltKey holds the directory's salt (frame.go), drawn when the stable
// file is first written.
const saltKey = "raftlog:salt"

// firstKey holds the first index after a head truncation inside a
// segment (Store.truncateHead).
const firstKey = "raftlog:first"

// ErrKeyNotFound is Get's error for a key never set. Raft recognises it by
// its text, "not found", as it does raft-boltdb's.
var ErrKeyNotFound = errors.New("not found")

// stable holds the StableStore's keys in memory and in the file "stable",
// replaced whole on every Set.
type stable struct {
	dir  string
	keys map[string][]byte
}

// openStable reads dir's stable file, which must hold a salt. Missing, it
// is written with a new salt and nothing else, unless the directory holds
// segments (withLog): the file is written before any segment, so that is
// a lost file.
func openStable(dir string, withLog bool) (*stable, error) {
	st := &stable{dir: dir, keys: map[string][]byte{}}
	path := filepath.Join(dir, stableFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && withLog:
		return nil, fmt.Errorf("%w: %s is missing, but the directory holds log segments", ErrCorrupt, path)
	case errors.Is(err, fs.ErrNotExist):
		var salt [8]byte
		if _, err := rand.Read(salt[:]); err != nil {
			return nil, err
		}
		st.keys[saltKey] = salt[:]
		return st, st.write(st.encode())
	case err != nil:
		return nil, err
	}
	if err := st.decode(b); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if _, ok := st.uint64(saltKey); !ok {
		return nil, fmt.Errorf("%w: %s: no salt", ErrCorrupt, path)
	}
	return st, nil
}

// Exists reports whether dir holds a store: its stable file, which Open
// writes before anything else. It changes nothing, so that a caller who
// knows a store should be there (snapshots beside it) can refuse a lost
// one before Open would make a new, empty one.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, stableFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// decode reads the file's layout: magic, CRC-32C of the rest, then per key
// its length, the key, the value's length and the value.
func (st *stable) decode(b []byte) error {
	le := binary.LittleEndian
	if len(b) < 8 || le.Uint32(b) != stableMagic {
		return errors.New("not a stable file")
	}
	if crc32.Checksum(b[8:], castagnoli) != le.Uint32(b[4:]) {
		return errors.New("CRC mismatch")
	}
	for rest := b[8:]; len(rest) > 0; {
		var k, v []byte
		var ok bool
		if k, rest, ok = cut(rest); !ok {
			return errors.New("a key runs past the end")
		}
		if v, rest, ok = cut(rest); !ok {
			return fmt.Errorf("the value of %q runs past the end", k)
		}
		st.keys[string(k)] = v
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", firstKey, saltKey} { // the uint64 keys
		if v, ok := st.keys[k]; ok && len(v) != 8 {
			return fmt.Errorf("%s holds %d bytes, not 8", k, len(v))
		}
	}
	return nil
}

// cut splits a length-prefixed field off b.
func cut(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return slices.Clone(b[4 : 4+n]), b[4+n:], true
}

func (st *stable) encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, stableMagic)
	b = le.AppendUint32(b, 0)
	for _, k := range slices.Sorted(maps.Keys(st.keys)) {
		b = le.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = le.AppendUint32(b, uint32(len(st.keys[k])))
		b = append(b, st.keys[k]...)
	}
	le.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

// set stores key=val durably: a new file, synced, renamed over the old
// one, and the directory synced.
func (st *stable) set(key, val []byte) error {
	old, had := st.keys[string(key)]
	st.keys[string(key)] = slices.Clone(val)
	b := st.encode()
	if len(b) > maxStable {
		st.restore(key, old, had)
		return fmt.Errorf("raftlog: stable store above %d bytes", maxStable)
	}
	if err := st.write(b); err != nil {
		st.restore(key, old, had)
		return err
	}
	return nil
}

// remove deletes key durably, if it is set.
func (st *stable) remove(key []byte) error {
	old, had := st.keys[string(key)]
	if !had {
		return nil
	}
	delete(st.keys, string(key))
	if err := st.write(st.encode()); err != nil {
		st.restore(key, old, had)
		return err
	}
	return nil
}

// uint64 reads an 8-byte value.
func (st *stable) uint64(key string) (uint64, bool) {
	v, ok := st.keys[key]
	if !ok || len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func (st *stable) restore(key, old []byte, had bool) {
	if had {
		st.keys[string(key)] = old
	} else {
		delete(st.keys, string(key))
	}
}

func (st *stable) write(b []byte) error {
	path := filepath.Join(st.dir, stableFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(st.dir)
}

// Set stores val under key (raft.StableStore).
func (s *Store) Set(key, val []byte) error {
	if strings.HasPrefix(string(key), "raftlog:") {
		return fmt.Errorf("raftlog: key %q is the store's own", key)
	}
	defer s.changing()()
	if s.closed {
		return errClosed
	}
	return s.stable.set(key, val)
}

// Get returns key's value, ErrKeyNotFound if it was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	v, ok := s.stable.keys[string(key)]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return slices.Clone(v), nil
}

// SetUint64 stores val under key as 8 bytes, big endian.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns key's value; a value not of 8 bytes is ErrCorrupt.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s: %q holds %d bytes, not 8", ErrCorrupt, filepath.Join(s.dir, stableFile), key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
