package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// List implements lock.Lister: a barrier, one listing of the root, then
// per name in byte order after the cursor one listing of its directory and
// one read of its lowest child (and of each other holder, for a type
// other than a mutex), until the page is full (DESIGN.md,
// "List").
func (l *Locker) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	o, err := lock.NewListOptions(prefix, opts...)
	if err != nil {
		return lock.Page{}, err
	}
	after, err := decodeCursor(prefix, o.Cursor)
	if err != nil {
		return lock.Page{}, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return lock.Page{}, fmt.Errorf("zookeeper: list %q: %w", prefix, err)
	}
	defer end()
	var page lock.Page
	err = retry(opCtx, func() (err error) {
		page, err = l.listPage(opCtx, prefix, after, o.Limit)
		return err
	})
	if err != nil {
		return lock.Page{}, l.fail(ctx, opCtx, fmt.Sprintf("list %q", prefix), err)
	}
	return page, nil
}

// listPage is one attempt at a page of at most limit held names that start
// with prefix and come after after. It reads one held name beyond the
// page, to know whether there is a next page.
func (l *Locker) listPage(ctx context.Context, prefix, after string, limit int) (lock.Page, error) {
	now, err := l.barrier(ctx)
	if err != nil {
		return lock.Page{}, err
	}
	dirs, err := callFor(ctx, l, 0, ackNone, func() ([]string, error) {
		dirs, _, err := l.conn.Children(l.cfg.Root)
		return dirs, err
	}, nil)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return lock.Page{}, nil
	case err != nil:
		return lock.Page{}, err
	}
	var page lock.Page
	for _, name := range candidates(dirs, prefix, after) {
		info, err := l.describe(ctx, name, now, 0)
		switch {
		case err != nil:
			return lock.Page{}, err
		case !info.Held: // a container the reaper has not removed yet
			continue
		case len(page.Locks) == limit:
			page.Next = encodeCursor(prefix, page.Locks[limit-1].Name)
			return page, nil
		}
		page.Locks = append(page.Locks, info)
	}
	return page, nil
}

// candidates are the lock names among the root's children that start with
// prefix and come after after ("": from the start), in byte order. The
// escaping maps each byte on its own and is a prefix code, so a name starts
// with prefix exactly when its escaped form starts with the escaped
// prefix; escaped order is not byte order, so the names are decoded before
// they are sorted. Children that are not escaped lock names are skipped.
func candidates(dirs []string, prefix, after string) []string {
	esc := escapeName(prefix)
	var out []string
	for _, d := range dirs {
		if !strings.HasPrefix(d, esc) {
			continue
		}
		name, err := unescapeName(d)
		if err != nil || lock.ValidateName(name) != nil || (after != "" && name <= after) {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// A cursor is "zk1.<crc32 of the escaped prefix and name, 8 hex
// digits>.<escaped name>": the last name of the page before. The checksum
// ties it to its prefix and catches damage; it is not a secret.
const cursorTag = "zk1."

func encodeCursor(prefix, last string) string {
	e := escapeName(last)
	return fmt.Sprintf("%s%08x.%s", cursorTag, cursorSum(prefix, e), e)
}

// decodeCursor returns the last name of the page before c, "" for no
// cursor; a cursor that List did not make for prefix is ErrInvalidOption.
func decodeCursor(prefix, c string) (string, error) {
	if c == "" {
		return "", nil
	}
	bad := fmt.Errorf("%w: %q is not a cursor of this List", lock.ErrInvalidOption, c)
	rest, ok := strings.CutPrefix(c, cursorTag)
	if !ok {
		return "", bad
	}
	sum, e, ok := strings.Cut(rest, ".")
	if !ok || len(sum) != 8 {
		return "", bad
	}
	v, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || fmt.Sprintf("%08x", v) != sum || uint32(v) != cursorSum(prefix, e) {
		return "", bad
	}
	last, err := unescapeName(e)
	if err != nil || lock.ValidateName(last) != nil || !strings.HasPrefix(last, prefix) {
		return "", bad
	}
	return last, nil
}

// cursorSum is the checksum of a cursor; escaped names have no ".".
func cursorSum(prefix, escaped string) uint32 {
	return crc32.ChecksumIEEE([]byte(escapeName(prefix) + "." + escaped))
}
