package zookeeper

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/quorumlock/quorumlock/lock"
)

// Child nodes are named "_c_<id>-lock-<sequence>": the protected prefix
// and the id let a claim find its node after a lost create response (as
// Curator's protected mode does); the server appends the 10-digit sequence.
// The id is 32 characters: a mutex's is a random GUID in lower-case hex;
// a claim of another type starts its id with a type token, then random hex
// (DESIGN.md, "The type in the child's name"). Every version parses the id
// as 32 characters it does not interpret, so a child of any type is a
// claim, in its place, to every version.
const (
	protectedPrefix = "_c_"
	guidLen         = 32 // characters of the id: a 128-bit GUID in hex, or a type token and random hex
	lockMarker      = "-lock-"
	seqLen          = 10
	electionTag     = "E_"  // the type token of an election's claim
	readerTag       = "Rr_" // a read-write lock's reader
	writerTag       = "Rw_" // a read-write lock's writer
	semaphoreMark   = 'S'   // a semaphore's token: S<limit>_
	maxTagLen       = 10    // the grammar's bound on a type token
)

const upperHex = "0123456789ABCDEF"

// escapeName maps a lock name to one znode name: ASCII letters, digits, '-'
// and '_' stay, every other byte becomes %XX. The mapping is injective
// (unescapeName inverts it) and never yields "/", "." or "..".
func escapeName(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 16)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xf])
	}
	return b.String()
}

func isSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// errBadEscape: unescapeName was given a string escapeName cannot produce.
var errBadEscape = errors.New("zookeeper: not an escaped lock name")

// unescapeName inverts escapeName. It rejects every string escapeName does
// not produce, so the two are a bijection between names and their images.
func unescapeName(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isSafe(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s):
			hi, lo := strings.IndexByte(upperHex, s[i+1]), strings.IndexByte(upperHex, s[i+2])
			if hi < 0 || lo < 0 {
				return "", errBadEscape
			}
			v := byte(hi<<4 | lo)
			if isSafe(v) {
				return "", errBadEscape
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", errBadEscape
		}
	}
	return b.String(), nil
}

// child is one parsed claim node of a lock directory.
type child struct {
	name  string
	guid  string // the id: compared whole with a claim's own
	seq   int64
	typ   nameType
	write bool // a read-write lock's writer (Rw_); false for every other child
}

// nameType is the type a name lives as (lock/DESIGN.md, "One namespace,
// one type per live name"), carried in its claims' ids: a family and,
// for a semaphore, its limit (part of the type: limits 3 and 5 are two
// types).
type nameType struct {
	family family
	limit  int // a semaphore's; 0 for the other families
}

// family is a type without its parameter.
type family uint8

const (
	famMutex     family = iota // an id of 32 lower-case hex digits
	famElection                // electionTag, then lower-case hex
	famSemaphore               // "S<limit>_", then lower-case hex
	famRW                      // readerTag or writerTag, then lower-case hex
	famUnknown                 // any other id: a later version's type, or none; matches no claim of this version
)

var (
	typeMutex    = nameType{family: famMutex}
	typeElection = nameType{family: famElection}
	typeRW       = nameType{family: famRW}
	typeUnknown  = nameType{family: famUnknown}
)

// semaphoreType is the type of a semaphore of limit (1 to lock.MaxPermits).
func semaphoreType(limit int) nameType { return nameType{family: famSemaphore, limit: limit} }

func (t nameType) String() string {
	switch t.family {
	case famMutex:
		return "a mutex"
	case famElection:
		return "an election"
	case famSemaphore:
		return fmt.Sprintf("a semaphore of limit %d", t.limit)
	case famRW:
		return "a read-write lock"
	}
	return "a type this version does not know"
}

// typeOfID reads the type token of a child's id, and for a read-write
// lock its mode (write).
func typeOfID(id string) (typ nameType, write bool) {
	switch {
	case len(id) != guidLen:
		return typeUnknown, false
	case isLowerHex(id):
		return typeMutex, false
	case strings.HasPrefix(id, electionTag) && isLowerHex(id[len(electionTag):]):
		return typeElection, false
	case strings.HasPrefix(id, readerTag) && isLowerHex(id[len(readerTag):]):
		return typeRW, false
	case strings.HasPrefix(id, writerTag) && isLowerHex(id[len(writerTag):]):
		return typeRW, true
	case id[0] == semaphoreMark:
		if limit, ok := parseLimit(id); ok {
			return semaphoreType(limit), false
		}
	}
	return typeUnknown, false
}

// parseLimit reads "S<limit>_<hex>": the limit in decimal without a
// leading zero, 1 to lock.MaxPermits (a larger one is a later version's).
func parseLimit(id string) (int, bool) {
	end := strings.IndexByte(id, '_')
	if end < 2 || end > maxTagLen-1 || id[1] == '0' || !isLowerHex(id[end+1:]) {
		return 0, false
	}
	n, err := strconv.Atoi(id[1:end])
	if err != nil || n < 1 || n > lock.MaxPermits || strconv.Itoa(n) != id[1:end] {
		return 0, false
	}
	return n, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// tag is the type token a claim of typ (and mode write, for a read-write
// lock) puts in front of its id's random hex; "" for a mutex.
func tag(typ nameType, write bool) string {
	switch typ.family {
	case famElection:
		return electionTag
	case famSemaphore:
		return fmt.Sprintf("%c%d_", semaphoreMark, typ.limit)
	case famRW:
		if write {
			return writerTag
		}
		return readerTag
	}
	return ""
}

// newID is a fresh id for a claim of type typ (and mode write): a random
// 128-bit GUID in hex for a mutex; for another type its tag, then random
// hex to fill the id (120 bits after E_, 104 after S1024_).
func newID(typ nameType, write bool) (string, error) {
	id, err := newGUID()
	if t := tag(typ, write); err == nil && t != "" {
		id = t + id[:guidLen-len(t)]
	}
	return id, err
}

// newGUID is a random 128-bit GUID in hex.
func newGUID() (string, error) {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return "", fmt.Errorf("zookeeper: GUID: %w", err)
	}
	return hex.EncodeToString(g[:]), nil
}

// parseChild parses "_c_<id>-lock-<seq>", the id of any 32 characters
// (its type is typeUnknown unless this version knows its token); other
// names are not claims.
func parseChild(name string) (child, bool) {
	const n = len(protectedPrefix) + guidLen + len(lockMarker)
	if len(name) < n+seqLen || !strings.HasPrefix(name, protectedPrefix) || name[n-len(lockMarker):n] != lockMarker {
		return child{}, false
	}
	seq, err := strconv.ParseInt(name[n:], 10, 64)
	if err != nil || seq < 0 {
		return child{}, false
	}
	id := name[len(protectedPrefix) : len(protectedPrefix)+guidLen]
	typ, write := typeOfID(id)
	return child{name: name, guid: id, seq: seq, typ: typ, write: write}, true
}

// sortedChildren parses names and orders the claims by sequence number.
func sortedChildren(names []string) []child {
	kids := make([]child, 0, len(names))
	for _, n := range names {
		if c, ok := parseChild(n); ok {
			kids = append(kids, c)
		}
	}
	sort.Slice(kids, func(i, j int) bool { return kids[i].seq < kids[j].seq })
	return kids
}
