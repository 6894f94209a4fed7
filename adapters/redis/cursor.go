package redis

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// listCursor is where a List page starts (DESIGN.md, "List"): a SCAN
// cursor, and the digests of the names already returned from the SCAN
// step that starts there (a step that did not fit on one page).
type listCursor struct {
	scan uint64
	seen []digest
}

// digest identifies a name in a cursor: the first 16 bytes of its SHA-256.
type digest [16]byte

func digestOf(name string) digest {
	sum := sha256.Sum256([]byte(name))
	return digest(sum[:16])
}

const (
	cursorVersion = 1
	tagLen        = 8
	// maxSeen bounds listCursor.seen so that every cursor fits in
	// lock.MaxCursorLen once encoded: 3 bytes of base64 per 4 characters,
	// less the version, two varints and the tag.
	maxSeen = (lock.MaxCursorLen/4*3 - 1 - 2*binary.MaxVarintLen64 - tagLen) / len(digest{})
)

// encode returns c as an opaque string for Page.Next: base64url of the
// version, the SCAN cursor, the digests and a tag that binds them to the
// key prefix and the listed prefix (tagOf).
func (c listCursor) encode(keyPrefix, prefix string) string {
	body := []byte{cursorVersion}
	body = binary.AppendUvarint(body, c.scan)
	body = binary.AppendUvarint(body, uint64(len(c.seen)))
	for _, d := range c.seen {
		body = append(body, d[:]...)
	}
	body = append(body, tagOf(keyPrefix, prefix, body)...)
	return base64.RawURLEncoding.EncodeToString(body)
}

// decodeCursor reads a Page.Next that encode made for the same key prefix
// and listed prefix; "" is the first page. Anything else fails with
// lock.ErrInvalidOption.
func decodeCursor(s, keyPrefix, prefix string) (listCursor, error) {
	if s == "" {
		return listCursor{}, nil
	}
	bad := func(why string) (listCursor, error) {
		return listCursor{}, fmt.Errorf("%w: cursor: %s", lock.ErrInvalidOption, why)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not one of this backend's")
	}
	if len(raw) < 1+tagLen || raw[0] != cursorVersion {
		return bad("not one of this backend's")
	}
	body, tag := raw[:len(raw)-tagLen], raw[len(raw)-tagLen:]
	if !bytes.Equal(tag, tagOf(keyPrefix, prefix, body)) {
		return bad("damaged, or made for another prefix")
	}
	rest := body[1:]
	scan, n := binary.Uvarint(rest)
	if n <= 0 {
		return bad("damaged")
	}
	rest = rest[n:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > uint64(maxSeen) || uint64(len(rest)-n) != count*uint64(len(digest{})) {
		return bad("damaged")
	}
	rest = rest[n:]
	c := listCursor{scan: scan}
	for len(rest) > 0 {
		c.seen = append(c.seen, digest(rest[:len(digest{})]))
		rest = rest[len(digest{}):]
	}
	return c, nil
}

// tagOf is the first tagLen bytes of a SHA-256 over a domain string, the
// key prefix, the listed prefix (each with its length) and body.
func tagOf(keyPrefix, prefix string, body []byte) []byte {
	h := sha256.New()
	var b []byte
	b = append(b, "quorumlock redis list cursor"...)
	for _, s := range []string{keyPrefix, prefix} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	h.Write(b)
	h.Write(body)
	return h.Sum(nil)[:tagLen]
}
