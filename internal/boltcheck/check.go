package boltcheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrCorrupt is wrapped by every error about the file's contents.
var ErrCorrupt = errors.New("boltcheck: corrupt file")

// Visit is called for every key/value pair of every bucket; buckets is the
// path of bucket names from the root, outermost first. The slices are only
// valid during the call. An error stops the walk and is returned wrapped in
// ErrCorrupt: visit judges the contents.
type Visit func(buckets [][]byte, key, value []byte) error

// Check checks the bbolt file at path; visit may be nil. The caller makes
// sure nobody writes the file meanwhile (bbolt's shared lock: open it
// read-only first).
func Check(path string, visit Visit) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return CheckReader(f, fi.Size(), visit)
}

// CheckReader checks the size bytes of r as a bbolt file; visit may be nil.
func CheckReader(r io.ReaderAt, size int64, visit Visit) error {
	c := &checker{r: r, size: size, visit: visit, seen: map[uint64]bool{}, free: map[uint64]bool{}}
	m, err := c.meta()
	if err != nil {
		return err
	}
	c.hwm = m.pgid
	if filePages := uint64(size) / c.pageSize; c.hwm > filePages {
		return corrupt("cut short: %d pages in the file, %d in use", filePages, c.hwm)
	}
	if m.freelist != noFreelist {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	if m.root == 0 {
		return corrupt("the root bucket has no root page")
	}
	if err := c.tree(m.root, nil, nil, nil); err != nil {
		return err
	}
	if m.freelist != noFreelist { // else bbolt frees whatever nothing reaches
		for p := uint64(2); p < c.hwm; p++ {
			if !c.seen[p] && !c.free[p] {
				return corrupt("page %d: neither in use nor on the freelist", p)
			}
		}
	}
	return nil
}

// bbolt's file format, version 2 (go.etcd.io/bbolt internal/common).
const (
	magic      = 0xED0CDAED
	version    = 2
	noFreelist = ^uint64(0)

	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64; an inline page follows when root is 0
	metaSize         = 64 // after the page header of pages 0 and 1
	metaSummed       = 56 // the bytes the meta's FNV-64a checksum covers

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10
	bucketLeaf   = 0x01

	minPageSize = 1024    // bbolt looks for the second meta page from 1 KiB on
	maxPageSize = 1 << 24 // bbolt looks up to 16 MiB
)

var ne = binary.NativeEndian // bbolt writes its structs as they lie in memory

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

type checker struct {
	r        io.ReaderAt
	size     int64
	visit    Visit
	pageSize uint64
	hwm      uint64          // pages below it are in use or free
	seen     map[uint64]bool // pages reached so far (overflow pages included)
	free     map[uint64]bool // pages a persisted freelist lists
}

type meta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

// parseMeta decodes the meta of the page that starts at b, if valid.
func parseMeta(b []byte) (meta, bool) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, false
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	h := fnv.New64a()
	_, _ = h.Write(m[:metaSummed])
	if ne.Uint32(m[0:]) != magic || ne.Uint32(m[4:]) != version || ne.Uint64(m[56:]) != h.Sum64() {
		return meta{}, false
	}
	return meta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, true
}

// meta finds the page size as bbolt does (the first meta page's, else the
// second's, looked for at 1 KiB, 2 KiB …) and returns the meta bbolt would
// use: the valid one with the higher transaction ID.
func (c *checker) meta() (meta, error) {
	m0, ok0 := parseMeta(c.read(0, pageHeaderSize+metaSize))
	pageSize := int64(m0.pageSize)
	if !ok0 {
		for pos := int64(minPageSize); pos <= maxPageSize && pos < c.size-minPageSize; pos <<= 1 {
			if m, ok := parseMeta(c.read(pos, pageHeaderSize+metaSize)); ok {
				pageSize = int64(m.pageSize)
				break
			}
		}
	}
	if pageSize < minPageSize || pageSize > maxPageSize {
		return meta{}, corrupt("no valid meta page in %d bytes", c.size)
	}
	if c.size < 2*pageSize {
		return meta{}, corrupt("%d bytes, less than two pages of %d", c.size, pageSize)
	}
	m1, ok1 := parseMeta(c.read(pageSize, pageHeaderSize+metaSize))
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	if !ok0 && !ok1 {
		return meta{}, corrupt("no valid meta page")
	}
	if int64(m.pageSize) != pageSize {
		return meta{}, corrupt("the meta pages disagree on the page size (%d, %d)", pageSize, m.pageSize)
	}
	// The checksum leaves out the page headers; bbolt's Tx.Check asserts
	// them, also that of a meta page it does not use.
	for id := range int64(2) {
		hdr := c.read(id*pageSize, pageHeaderSize)
		if ne.Uint64(hdr) != uint64(id) || ne.Uint16(hdr[8:]) != metaPage {
			return meta{}, corrupt("meta page %d: its header names page %d, flags %#x", id, ne.Uint64(hdr), ne.Uint16(hdr[8:]))
		}
	}
	c.pageSize = uint64(pageSize)
	return m, nil
}

// read returns up to n bytes at off (fewer at the end of the file).
func (c *checker) read(off, n int64) []byte {
	if off < 0 || off >= c.size {
		return nil
	}
	n = min(n, c.size-off)
	b := make([]byte, n)
	k, _ := c.r.ReadAt(b, off)
	return b[:k]
}

// page reads page id with its overflow pages, after checking that it is in
// range, inside the file, identifies itself and is reached for the first
// time.
func (c *checker) page(id uint64) ([]byte, error) {
	filePages := uint64(c.size) / c.pageSize
	switch {
	case id < 2 || id >= c.hwm:
		return nil, corrupt("page %d: outside the data pages [2, %d)", id, c.hwm)
	case id >= filePages:
		return nil, corrupt("page %d: beyond the end of the file (%d pages)", id, filePages)
	}
	hdr := c.read(int64(id*c.pageSize), pageHeaderSize)
	if len(hdr) < pageHeaderSize {
		return nil, corrupt("page %d: unreadable header", id)
	}
	if self := ne.Uint64(hdr[0:]); self != id {
		return nil, corrupt("page %d: identifies itself as page %d", id, self)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= c.hwm-id || overflow >= filePages-id {
		return nil, corrupt("page %d: %d overflow pages run past the end", id, overflow)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p] {
			return nil, corrupt("page %d: reached twice", p)
		}
		if c.free[p] {
			return nil, corrupt("page %d: in use and on the freelist", p)
		}
		c.seen[p] = true
	}
	n := int64((overflow + 1) * c.pageSize)
	b := c.read(int64(id*c.pageSize), n)
	if int64(len(b)) < n {
		return nil, corrupt("page %d: unreadable", id)
	}
	return b, nil
}

// freelist checks a persisted freelist: page id, and the pages it lists.
func (c *checker) freelist(id uint64) error {
	b, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := ne.Uint16(b[8:]); flags != freelistPage {
		return corrupt("freelist page %d: flags %#x", id, flags)
	}
	body := b[pageHeaderSize:]
	count := uint64(ne.Uint16(b[10:]))
	if count == 0xFFFF { // the real count is the first element
		if len(body) < 8 {
			return corrupt("freelist page %d: no count", id)
		}
		count, body = ne.Uint64(body), body[8:]
	}
	if count > uint64(len(body)/8) {
		return corrupt("freelist page %d: %d entries overflow the page", id, count)
	}
	for i := range count {
		p := ne.Uint64(body[i*8:])
		if p < 2 || p >= c.hwm || c.free[p] || c.seen[p] {
			return corrupt("freelist page %d: entry %d is page %d", id, i, p)
		}
		c.free[p] = true
	}
	return nil
}

// tree checks the subtree under page id, whose keys must lie in [lo, hi)
// (nil: unbounded), in the bucket at path.
func (c *checker) tree(id uint64, lo, hi []byte, path [][]byte) error {
	b, err := c.page(id)
	if err != nil {
		return err
	}
	if err := c.node(b, lo, hi, path); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	return nil
}

// node checks one branch or leaf page (or an inline bucket's page) b.
func (c *checker) node(b []byte, lo, hi []byte, path [][]byte) error {
	if len(b) < pageHeaderSize {
		return corrupt("%d bytes, shorter than a page header", len(b))
	}
	flags, count := ne.Uint16(b[8:]), int(ne.Uint16(b[10:]))
	if count > (len(b)-pageHeaderSize)/elementSize {
		return corrupt("%d elements overflow the page", count)
	}
	switch flags {
	case branchPage:
		return c.branch(b, count, lo, hi, path)
	case leafPage:
		return c.leaf(b, count, lo, hi, path)
	default:
		return corrupt("flags %#x: neither a branch nor a leaf", flags)
	}
}

func (c *checker) branch(b []byte, count int, lo, hi []byte, path [][]byte) error {
	if count == 0 {
		return corrupt("an empty branch")
	}
	keys := make([][]byte, count)
	children := make([]uint64, count)
	for i := range count {
		e := pageHeaderSize + i*elementSize
		key, err := span(b, e, uint64(ne.Uint32(b[e:])), ne.Uint32(b[e+4:]))
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		if err := inOrder(i, key, keys, lo, hi); err != nil {
			return err
		}
		keys[i], children[i] = key, ne.Uint64(b[e+8:])
	}
	for i, child := range children {
		childHi := hi
		if i+1 < count {
			childHi = keys[i+1]
		}
		if err := c.tree(child, keys[i], childHi, path); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) leaf(b []byte, count int, lo, hi []byte, path [][]byte) error {
	keys := make([][]byte, count)
	for i := range count {
		e := pageHeaderSize + i*elementSize
		flags, pos, ksize, vsize := ne.Uint32(b[e:]), ne.Uint32(b[e+4:]), ne.Uint32(b[e+8:]), ne.Uint32(b[e+12:])
		key, err := span(b, e, uint64(pos), ksize)
		if err != nil {
			return fmt.Errorf("element %d: key: %w", i, err)
		}
		value, err := span(b, e, uint64(pos)+uint64(ksize), vsize)
		if err != nil {
			return fmt.Errorf("element %d: value: %w", i, err)
		}
		if err := inOrder(i, key, keys, lo, hi); err != nil {
			return err
		}
		keys[i] = key
		if flags&bucketLeaf != 0 {
			if err := c.bucket(value, append(path[:len(path):len(path)], key)); err != nil {
				return err
			}
		} else if c.visit != nil {
			if err := c.visit(path, key, value); err != nil {
				return fmt.Errorf("%w: bucket %q, key %x: %w", ErrCorrupt, path, key, err)
			}
		}
	}
	return nil
}

// bucket checks a bucket value: its header, then its inline page or its
// root page.
func (c *checker) bucket(v []byte, path [][]byte) error {
	if len(v) < bucketHeaderSize {
		return corrupt("bucket %q: a value of %d bytes", path, len(v))
	}
	root := ne.Uint64(v)
	if root != 0 {
		return c.tree(root, nil, nil, path)
	}
	inline := v[bucketHeaderSize:]
	if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPage {
		return corrupt("bucket %q: a malformed inline page", path)
	}
	if err := c.node(inline, nil, nil, path); err != nil {
		return fmt.Errorf("bucket %q (inline): %w", path, err)
	}
	return nil
}

// span returns the n bytes at offset pos from the element at e in b: keys
// and values are addressed from their element.
func span(b []byte, e int, pos uint64, n uint32) ([]byte, error) {
	start := uint64(e) + pos
	end := start + uint64(n)
	if end > uint64(len(b)) {
		return nil, corrupt("%d bytes at %d run past the page (%d bytes)", n, start, len(b))
	}
	return b[start:end], nil
}

// inOrder checks key i of a page against the keys before it and the range
// [lo, hi) its parent gives the page. bbolt has no empty keys.
func inOrder(i int, key []byte, keys [][]byte, lo, hi []byte) error {
	switch {
	case len(key) == 0:
		return corrupt("key %d is empty", i)
	case i == 0 && lo != nil && bytes.Compare(key, lo) < 0:
		return corrupt("key %d (%x) below its parent's key %x", i, key, lo)
	case i > 0 && bytes.Compare(keys[i-1], key) >= 0:
		return corrupt("key %d (%x) not above key %d (%x)", i, key, i-1, keys[i-1])
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return corrupt("key %d (%x) not below the next parent key %x", i, key, hi)
	}
	return nil
}
