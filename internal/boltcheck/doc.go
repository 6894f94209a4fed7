// Package boltcheck checks a bbolt database file from its raw bytes,
// without bbolt, before bbolt is allowed to map it.
//
// bbolt trusts its file: it reads pages through unsafe pointers into a
// memory map, and a damaged page makes it fault (SIGBUS, SIGSEGV), fail an
// assertion, or, when the file has no persisted freelist (NoFreelistSync),
// panic on a goroutine of its own while it rebuilds the freelist at Open.
// None of these can be recovered. Check walks the same structure with
// bounds checks and reports the first inconsistency bbolt would trip on as
// an error wrapping ErrCorrupt, naming the page.
//
// What it checks: the meta page bbolt would use (the valid one with the
// higher transaction ID), and the headers of both meta pages; the file
// holds every page below the high-water mark; every page reachable from the
// meta identifies itself, is a branch or a leaf, and is reached once; every
// element, key and value lies inside its page; keys are non-empty and
// strictly ordered within a page and within the range the parent branch
// gives them; bucket values are well formed (inline buckets included); a
// persisted freelist lists pages in range that nothing reaches, and with
// the reachable pages covers all pages in use. bbolt keeps no checksums on data pages, so a flipped byte inside
// a key or value that leaves the structure valid is not detected.
//
// The format (pages, elements, the meta layout, native byte order) is
// bbolt's file format version 2, as written by go.etcd.io/bbolt v1.3 and
// v1.4.
//
// The package imports the standard library only.
package boltcheck
