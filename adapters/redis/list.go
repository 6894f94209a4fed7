package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/quorumlock/quorumlock/lock"
)

// minScanCount is the least COUNT of a List's SCAN calls, so that a
// selective prefix in a big keyspace does not cost one call per key.
const minScanCount = 100

// List implements lock.Lister (DESIGN.md, "Operating a lock"): SCAN from
// here finds up to a page of lease keys with the prefix, and one script
// reads them all (listScript). Names come in SCAN's order (unspecified);
// a name held throughout a listing is listed at least once, and may be
// listed twice, on two pages (SCAN's guarantee).
func (c *instance) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	o, err := lock.NewListOptions(prefix, opts...)
	if err != nil {
		return lock.Page{}, err
	}
	from, err := decodeCursor(o.Cursor, c.cfg.Prefix, prefix)
	if err != nil {
		return lock.Page{}, err
	}
	if err := c.enter(); err != nil {
		return lock.Page{}, err
	}
	defer c.leave()
	if err := ctx.Err(); err != nil {
		return lock.Page{}, fmt.Errorf("redis lock: list %q: %w", prefix, err)
	}
	names, next, err := c.scanPage(ctx, prefix, o.Limit, from)
	if err != nil {
		return lock.Page{}, c.cutErr(ctx, "list", prefix, err)
	}
	infos, err := c.readPage(ctx, names)
	if err != nil {
		return lock.Page{}, c.cutErr(ctx, "list", prefix, err)
	}
	page := lock.Page{Locks: infos}
	if next != nil {
		page.Next = next.encode(c.cfg.Prefix, prefix)
	}
	return page, nil
}

// scanPage returns the next limit names with prefix that SCAN finds from
// cursor from, and the cursor of the page after them (nil at the end). A
// SCAN step that brings more names than the page has room for is asked
// again with half the COUNT, down to 1; a step of COUNT 1 that still does
// not fit is split: the page takes its first names in byte order, and the
// cursor stays on that step, remembering them (DESIGN.md says why not
// "after the last name").
func (c *instance) scanPage(ctx context.Context, prefix string, limit int, from listCursor) ([]string, *listCursor, error) {
	leasePrefix := c.cfg.Prefix + "lease:"
	match := globEscape(leasePrefix+prefix) + "*"
	cur, seen := from.scan, from.seen
	var names []string
	onPage := map[string]bool{}
	count := max(limit, minScanCount)
	for {
		keys, next, err := c.rdb.Scan(ctx, cur, match, int64(count)).Result()
		if err != nil {
			return nil, nil, err
		}
		var step []string
		for _, k := range keys {
			name, ok := strings.CutPrefix(k, leasePrefix)
			if ok && !onPage[name] && !slices.Contains(seen, digestOf(name)) {
				step = append(step, name)
			}
		}
		slices.Sort(step)
		step = slices.Compact(step)
		room := limit - len(names)
		switch {
		case len(step) <= room:
			names = append(names, step...)
			for _, n := range step {
				onPage[n] = true
			}
			if next == 0 {
				return names, nil, nil
			}
			cur, seen = next, nil
			if len(names) == limit {
				return names, &listCursor{scan: cur}, nil
			}
			count = max(limit-len(names), minScanCount)
		case count > 1:
			count /= 2 // the same step again, smaller
		default: // one bucket chain with more names than room: split it
			take := step[:room]
			names = append(names, take...)
			for _, n := range take {
				seen = append(seen, digestOf(n))
			}
			if len(seen) > maxSeen {
				return nil, nil, fmt.Errorf("%w: one SCAN step of %d names is too long to page through", ErrUnexpectedReply, len(seen)+len(step)-room)
			}
			return names, &listCursor{scan: cur, seen: seen}, nil
		}
	}
}

// readPage reads the leases of names in one script and returns the Info of
// those still held (without Queue), in the order of names.
func (c *instance) readPage(ctx context.Context, names []string) ([]lock.Info, error) {
	if len(names) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, 1+2*len(names))
	keys = append(keys, c.epochKey)
	for _, n := range names {
		keys = append(keys, c.cfg.Prefix+"lease:"+n, c.cfg.Prefix+"beats:"+n)
	}
	v, err := c.runKeys(ctx, listScript, keys)
	if err != nil {
		return nil, err
	}
	bad := fmt.Errorf("%w: list answered %v", ErrUnexpectedReply, v)
	if v[0] != "ok" || len(v) != 1+len(names) {
		return nil, bad
	}
	var infos []lock.Info
	for i, e := range v[1:] {
		entry, ok := e.([]any)
		switch {
		case !ok:
			return nil, bad
		case len(entry) == 0:
			continue // freed since SCAN found it
		case len(entry) < 8:
			return nil, bad
		}
		si := instanceInfo{Info: lock.Info{Name: names[i]}}
		waiters, ok := entry[7].(int64)
		if !ok || !parseLease(&si, entry[:5], entry[5], entry[6]) {
			return nil, bad
		}
		si.Waiters = int(waiters)
		infos = append(infos, si.Info)
	}
	return infos, nil
}

// globEscape escapes the characters that SCAN's MATCH reads as a pattern,
// so that s matches itself only.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
