package zookeeper

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
	electionTag     = "E_" // the type token of an election's claim
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
	name string
	guid string // the id: compared whole with a claim's own
	seq  int64
	typ  nameType
}

// nameType is the type a name lives as (lock/DESIGN.md, "One namespace,
// one type per live name"), carried in its claims' ids.
type nameType uint8

const (
	typeMutex    nameType = iota // an id of 32 lower-case hex digits
	typeElection                 // electionTag, then lower-case hex
	typeUnknown                  // any other id: a later version's type, or none; matches no claim of this version
)

func (t nameType) String() string {
	switch t {
	case typeMutex:
		return "a mutex"
	case typeElection:
		return "an election"
	}
	return "a type this version does not know"
}

// typeOfID reads the type token of a child's id.
func typeOfID(id string) nameType {
	switch {
	case len(id) != guidLen:
		return typeUnknown
	case isLowerHex(id):
		return typeMutex
	case strings.HasPrefix(id, electionTag) && isLowerHex(id[len(electionTag):]):
		return typeElection
	}
	return typeUnknown
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newID is a fresh id for a claim of type typ: a random 128-bit GUID in
// hex for a mutex, the election's tag and 120 random bits for an
// election.
func newID(typ nameType) (string, error) {
	id, err := newGUID()
	if err == nil && typ == typeElection {
		id = electionTag + id[:guidLen-len(electionTag)]
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
	return child{name: name, guid: id, seq: seq, typ: typeOfID(id)}, true
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
