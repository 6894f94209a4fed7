package boltcheck_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/boltcheck"
)

// bbolt's Tx.Check runs on a goroutine of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newDB writes a small bbolt file with what Check must walk: a bucket of
// many keys (branch pages), an inline bucket, a value on overflow pages, a
// nested bucket, and pages freed by a later transaction. With persisted,
// the freelist is written to a page (bbolt's default) instead of rebuilt
// at Open (NoFreelistSync, as the node runs).
func newDB(t testing.TB, persisted bool) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: !persisted, FreelistType: bbolt.FreelistMapType})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		logs, err := tx.CreateBucket([]byte("logs"))
		if err != nil {
			return err
		}
		for i := range uint64(150) {
			if err := logs.Put(be(i+1), bytes.Repeat([]byte{byte(i)}, 30)); err != nil {
				return err
			}
		}
		conf, err := tx.CreateBucket([]byte("conf"))
		if err != nil {
			return err
		}
		if err := conf.Put([]byte("CurrentTerm"), be(3)); err != nil {
			return err
		}
		big, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		if err := big.Put([]byte("value"), bytes.Repeat([]byte("v"), 6000)); err != nil {
			return err
		}
		nested, err := big.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		return nested.Put([]byte("a"), []byte("b"))
	}))
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		logs := tx.Bucket([]byte("logs"))
		for i := range uint64(40) {
			if err := logs.Delete(be(i + 1)); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func be(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// TestCheck_HealthyFile: a file bbolt wrote passes, and visit sees every
// key/value pair bbolt itself iterates, with its bucket path.
func TestCheck_HealthyFile(t *testing.T) {
	for _, persisted := range []bool{false, true} {
		t.Run(fmt.Sprintf("persisted freelist %v", persisted), func(t *testing.T) {
			b := newDB(t, persisted)
			var got []string
			require.NoError(t, boltcheck.CheckReader(bytes.NewReader(b), int64(len(b)), func(buckets [][]byte, k, v []byte) error {
				got = append(got, fmt.Sprintf("%q %x=%x", buckets, k, v))
				return nil
			}))
			assert.Equal(t, bboltPairs(t, b), got)
			assert.Len(t, got, 110+1+1+1)
		})
	}
}

// bboltPairs lists the key/value pairs of b as bbolt iterates them.
func bboltPairs(t *testing.T, b []byte) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	var out []string
	var walk func(path [][]byte, bk *bbolt.Bucket) error
	walk = func(path [][]byte, bk *bbolt.Bucket) error {
		return bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(append(path[:len(path):len(path)], k), bk.Bucket(k))
			}
			out = append(out, fmt.Sprintf("%q %x=%x", path, k, v))
			return nil
		})
	}
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error { return walk([][]byte{name}, bk) })
	}))
	return out
}

// TestCheck_Damage: the damage seen on disks, each reported as ErrCorrupt
// with what is wrong.
func TestCheck_Damage(t *testing.T) {
	healthy := newDB(t, false)
	pageSize := int(binary.NativeEndian.Uint32(healthy[16+8:]))
	flip := func(offsets ...int) []byte {
		b := bytes.Clone(healthy)
		for _, o := range offsets {
			b[o] ^= 0xff
		}
		return b
	}
	// The root page of the meta bbolt uses, and its first element's key
	// made empty (the leaf element's ksize, at 8).
	ne := binary.NativeEndian
	m := healthy[16:]
	if m1 := healthy[pageSize+16:]; ne.Uint64(m1[48:]) > ne.Uint64(m[48:]) {
		m = m1
	}
	root := int(ne.Uint64(m[16:]))
	emptyKey := bytes.Clone(healthy)
	ne.PutUint32(emptyKey[root*pageSize+16+8:], 0)
	cases := []struct {
		what string
		file []byte
		want string
	}{
		{"empty", nil, "no valid meta page"},
		{"one page", healthy[:pageSize], "less than two pages"},
		{"cut in half", healthy[:len(healthy)/2], "cut short"},
		{"both meta pages flipped", flip(16+40, pageSize+16+40), "no valid meta page"},
		{"a page that names another", flip(2 * pageSize), "identifies itself"},
		{"a page of no known type", flip(2*pageSize + 8), "neither a branch nor a leaf"},
		{"an element count past the page", flip(2*pageSize + 11), "overflow the page"},
		// Found by FuzzCheckReader: bbolt asserts both meta page headers
		// (Tx.Check), and that no key is empty (as it reads a node).
		{"the header of a meta page bbolt does not use", flip(pageSize, pageSize+16+40), "meta page 1: its header"},
		{"an empty key", emptyKey, "key 0 is empty"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			err := boltcheck.CheckReader(bytes.NewReader(c.file), int64(len(c.file)), nil)
			require.ErrorIs(t, err, boltcheck.ErrCorrupt)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// TestCheck_VisitJudgesContents: an error from visit is corruption.
func TestCheck_VisitJudgesContents(t *testing.T) {
	b := newDB(t, false)
	err := boltcheck.CheckReader(bytes.NewReader(b), int64(len(b)), func(buckets [][]byte, k, _ []byte) error {
		if string(k) == "CurrentTerm" {
			return fmt.Errorf("bad term")
		}
		return nil
	})
	require.ErrorIs(t, err, boltcheck.ErrCorrupt)
	assert.Contains(t, err.Error(), `bucket ["conf"]`)
	assert.Contains(t, err.Error(), "bad term")
}

// TestCheck_FlippedBytes flips bytes of a file one at a time, in the pages
// in use: every byte of each page's header and of its first and last
// elements (elements are alike; the structure lies there), and every
// stride-th byte of the rest (keys and values). Check either reports
// ErrCorrupt, or bbolt opens the file read-write without a persisted
// freelist (the node's setting, which walks every page at Open), finds
// nothing wrong with its own Tx.Check, reads every pair and writes: none of
// which may panic. Before Check, such flips crashed the node (a fault, an
// assertion, or a panic on bbolt's freelist goroutine). A sweep of every
// byte (114,688 flips of the two files) passed too; FuzzCheckReader goes on
// from here.
func TestCheck_FlippedBytes(t *testing.T) {
	stride := 251
	if testing.Short() {
		stride = 1009
	}
	for _, persisted := range []bool{false, true} {
		t.Run(fmt.Sprintf("persisted freelist %v", persisted), func(t *testing.T) {
			healthy := newDB(t, persisted)
			path := filepath.Join(t.TempDir(), "flipped.db")
			offsets := flipOffsets(healthy, stride)
			refused := 0
			for _, off := range offsets {
				b := bytes.Clone(healthy)
				b[off] ^= 0xff
				if !passes(t, b) {
					refused++
					continue
				}
				requireBboltCopes(t, path, b, fmt.Sprintf("byte %d flipped", off))
			}
			t.Logf("%d of %d flips refused", refused, len(offsets))
			assert.Greater(t, refused, len(offsets)/10)
		})
	}
}

// flipOffsets are the bytes TestCheck_FlippedBytes flips in file b.
func flipOffsets(b []byte, stride int) []int {
	ne := binary.NativeEndian
	pageSize := int(ne.Uint32(b[16+8:]))
	hwm := max(int(ne.Uint64(b[16+40:])), int(ne.Uint64(b[pageSize+16+40:])))
	var offs []int
	for p := range hwm {
		page := b[p*pageSize : (p+1)*pageSize]
		flags, count := ne.Uint16(page[8:]), int(ne.Uint16(page[10:]))
		structure := func(i int) bool { return i < 16 }
		switch {
		case p < 2: // a meta page
			structure = func(i int) bool { return i < 16+64 }
		case flags == 0x01 || flags == 0x02: // branch, leaf
			structure = func(i int) bool { return i < 16+16 || (i >= 16*count && i < 16+16*count) }
		case flags == 0x10: // freelist
			structure = func(i int) bool { return i < 16+2*8 }
		}
		for i := range pageSize {
			if structure(i) || i%stride == 0 {
				offs = append(offs, p*pageSize+i)
			}
		}
	}
	return offs
}

func passes(t *testing.T, b []byte) bool {
	t.Helper()
	err := boltcheck.CheckReader(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		require.ErrorIs(t, err, boltcheck.ErrCorrupt)
	}
	return err == nil
}

// requireBboltCopes opens b with bbolt as the node would, checks it with
// bbolt's own Check, reads every pair, writes and deletes.
func requireBboltCopes(t testing.TB, path string, b []byte, what string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, b, 0o600))
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: Check passed it, bbolt panicked: %v", what, r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, NoSync: true})
	if err != nil {
		return // refused cleanly
	}
	defer func() { require.NoError(t, db.Close(), what) }()
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // to the end: its goroutine sends them all
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}), "%s: Check passed it, bbolt's Check did not", what)

	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, bk *bbolt.Bucket) error {
			if bk == nil {
				return nil // a top-level key that is not a bucket
			}
			if err := readAll(bk); err != nil {
				return err
			}
			if k, v := bk.Cursor().First(); k != nil && v != nil {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
			return bk.Put([]byte("added"), bytes.Repeat([]byte("x"), 100))
		})
	}), what)
}

// readAll reads every pair under bk, nested buckets included.
func readAll(bk *bbolt.Bucket) error {
	return bk.ForEach(func(k, v []byte) error {
		if v == nil {
			return readAll(bk.Bucket(k))
		}
		return nil
	})
}

// FuzzCheckReader: Check never panics, and what it passes bbolt copes with
// (as in TestCheck_FlippedBytes). Seeds: the two test files.
func FuzzCheckReader(f *testing.F) {
	f.Add(newDB(f, false))
	f.Add(newDB(f, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		if passes(t, b) {
			requireBboltCopes(t, filepath.Join(t.TempDir(), "fuzz.db"), b, "the fuzzed file")
		}
	})
}
