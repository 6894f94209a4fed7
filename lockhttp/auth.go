package lockhttp

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// Role is what an authenticated caller may do.
type Role uint8

// Roles, each allowed what the one before it is.
const (
	RoleNone   Role = iota // authenticated for nothing
	RoleClient             // sessions and locks
	RoleAdmin              // and revoke, leadership transfer, snapshots
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// minTokenLen is the shortest bearer token a token file may hold.
const minTokenLen = 16

// Tokens authenticates bearer tokens ("Authorization: Bearer TOKEN")
// listed in a file of "TOKEN ROLE" lines (ROLE client or admin; blank
// lines and lines starting with # are ignored). Its Authenticate is a
// Config.Authenticate. Safe for concurrent use; Reload swaps the set.
type Tokens struct {
	path string
	set  atomic.Pointer[[]tokenEntry]
}

type tokenEntry struct {
	digest [sha256.Size]byte // of the token: compared, so that its length leaks nothing either
	role   Role
}

// LoadTokens reads the token file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the file again. If it cannot be read or parsed, the
// tokens stay as they were and the error says why.
func (t *Tokens) Reload() error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("lockhttp: tokens: %w", err)
	}
	set, err := parseTokens(data)
	if err != nil {
		return fmt.Errorf("lockhttp: tokens %s: %w", t.path, err)
	}
	t.set.Store(&set)
	return nil
}

func parseTokens(data []byte) ([]tokenEntry, error) {
	var set []tokenEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want TOKEN ROLE", line)
		}
		if len(f[0]) < minTokenLen {
			return nil, fmt.Errorf("line %d: a token of %d bytes: at least %d", line, len(f[0]), minTokenLen)
		}
		var role Role
		switch f[1] {
		case "client":
			role = RoleClient
		case "admin":
			role = RoleAdmin
		default:
			return nil, fmt.Errorf("line %d: role %q: client or admin", line, f[1])
		}
		d := sha256.Sum256([]byte(f[0]))
		for _, e := range set {
			if e.digest == d {
				return nil, fmt.Errorf("line %d: a token listed twice", line)
			}
		}
		set = append(set, tokenEntry{digest: d, role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	return set, nil
}

// Authenticate returns the role of r's bearer token; false if it has
// none or an unknown one. The token's SHA-256 is compared with every
// entry's, in constant time, so the time taken says nothing about which
// entry matched, how much of one, or how long the tokens are.
func (t *Tokens) Authenticate(r *http.Request) (Role, bool) {
	got, ok := bearer(r)
	if !ok {
		return RoleNone, false
	}
	d := sha256.Sum256(got)
	role, found := RoleNone, 0
	for _, e := range *t.set.Load() {
		if subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1 {
			role, found = e.role, 1
		}
	}
	return role, found == 1
}

// bearer is r's bearer token.
func bearer(r *http.Request) ([]byte, bool) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return nil, false
	}
	return []byte(strings.TrimSpace(h[len(prefix):])), true
}
