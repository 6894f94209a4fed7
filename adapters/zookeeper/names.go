package zookeeper

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Child nodes are named "_c_<guid>-lock-<sequence>": the protected prefix
// and GUID let a claim find its node after a lost create response (as
// Curator's protected mode does); the server appends the 10-digit sequence.
const (
	protectedPrefix = "_c_"
	guidLen         = 32 // hex digits of a 128-bit GUID
	lockMarker      = "-lock-"
	seqLen          = 10
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
	guid string
	seq  int64
}

// parseChild parses "_c_<guid>-lock-<seq>"; other names are not claims.
func parseChild(name string) (child, bool) {
	const n = len(protectedPrefix) + guidLen + len(lockMarker)
	if len(name) < n+seqLen || !strings.HasPrefix(name, protectedPrefix) || name[n-len(lockMarker):n] != lockMarker {
		return child{}, false
	}
	seq, err := strconv.ParseInt(name[n:], 10, 64)
	if err != nil || seq < 0 {
		return child{}, false
	}
	return child{name: name, guid: name[len(protectedPrefix) : len(protectedPrefix)+guidLen], seq: seq}, true
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
