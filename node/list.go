package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/lock"
)

// List implements lock.Lister: a linearizable read (readBarrier) of the
// held names with prefix, in byte order, one page at a time (DESIGN.md,
// "Operating a lock").
func (c *client) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	o, err := lock.NewListOptions(prefix, opts...)
	if err != nil {
		return lock.Page{}, err
	}
	after, err := decodeCursor(o.Cursor, prefix)
	if err != nil {
		return lock.Page{}, err
	}
	if c.isClosed() {
		return lock.Page{}, lock.ErrClosed
	}
	if err := c.n.readBarrier(ctx); err != nil {
		return lock.Page{}, err
	}
	return c.n.list(prefix, after, o.Limit), nil
}

// list reads one page from this node's applied state: the held names with
// prefix after the name after, at most limit. It reads one name more to
// know whether a next page exists.
func (n *Node) list(prefix, after string, limit int) lock.Page {
	var page lock.Page
	n.bridge.readAges(func(s *fsm.State, a *ages) {
		now, wall := time.Now(), n.wallNow()
		held := s.List(prefix, after, limit+1)
		for _, li := range held[:min(limit, len(held))] {
			page.Locks = append(page.Locks, lockInfo(li, a, now, wall))
		}
		if len(held) > limit {
			page.Next = encodeCursor(held[limit-1].Name)
		}
	})
	return page
}

// encodeCursor makes the cursor of the page that follows name.
func encodeCursor(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

// decodeCursor returns the name a cursor of a listing of prefix follows
// ("" for the first page). A cursor that is not one (it does not decode to
// a valid name with that prefix) is lock.ErrInvalidOption.
func decodeCursor(cursor, prefix string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", fmt.Errorf("%w: cursor is not one of this backend's: %w", lock.ErrInvalidOption, err)
	}
	name := string(b)
	if err := lock.ValidateName(name); err != nil {
		return "", fmt.Errorf("%w: cursor does not name a lock: %s", lock.ErrInvalidOption, err.Error())
	}
	if !strings.HasPrefix(name, prefix) {
		return "", fmt.Errorf("%w: cursor is from a listing of another prefix", lock.ErrInvalidOption)
	}
	return name, nil
}
