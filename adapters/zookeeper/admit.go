package zookeeper

import (
	"context"
	"errors"

	"github.com/go-zookeeper/zk"
)

// Admission (DESIGN.md, "Who holds, who waits, who watches what"): which
// position in the queue a claim of each type is granted at, and which
// watch wakes it when it is not.

// admitted reports whether the claim's position, behind the children
// ahead (in sequence order), grants it; if not, it returns the watch that
// fires when that may have changed.
func (c *claim) admitted(ahead []child) (bool, watchKey) {
	if len(ahead) == 0 {
		return true, watchKey{}
	}
	pred := watchKey{watchData, c.dir + "/" + ahead[len(ahead)-1].name}
	switch {
	case c.typ.family == famSemaphore && len(ahead) < c.typ.limit:
		return true, watchKey{}
	case c.typ.family == famSemaphore && len(ahead) == c.typ.limit:
		// The first waiter: the release of any holder ahead admits it.
		return false, watchKey{watchChildren, c.dir}
	case c.typ.family == famRW && !c.write:
		for i := len(ahead) - 1; i >= 0; i-- {
			if ahead[i].write { // the nearest writer ahead goes last
				return false, watchKey{watchData, c.dir + "/" + ahead[i].name}
			}
		}
		return true, watchKey{}
	}
	return false, pred
}

// holding is how many of kids (a directory's claims, in sequence order)
// hold the name, by the head's type: a semaphore's first limit children
// of its type, a read-write lock's leading readers or its writer, else
// the head alone.
func holding(kids []child) int {
	if len(kids) == 0 {
		return 0
	}
	head := kids[0]
	switch {
	case head.typ.family == famSemaphore:
		n := 0
		for n < len(kids) && n < head.typ.limit && kids[n].typ == head.typ {
			n++
		}
		return n
	case head.typ.family == famRW && !head.write:
		n := 0
		for n < len(kids) && kids[n].typ == typeRW && !kids[n].write {
			n++
		}
		return n
	}
	return 1
}

// armed arms k's watch (or shares an armed one) for a claim that waits.
// A permit claim's wake-up may be a change made between its listing and
// the arming, which the watch would not report (DESIGN.md, "No missed
// release"), so it looks again after arming: a children watch lists
// again (children ahead only leave: the same count is the same list);
// a data watch reads the watched child, and one that is gone or has a
// slot (it was granted) means look again at once (errAgain). n is the
// number of children ahead at the listing.
func (l *Locker) armed(ctx context.Context, c *claim, k watchKey, n int) (<-chan zk.Event, error) {
	ch, err := l.watchOn(ctx, k)
	if err != nil || c.typ.family != famSemaphore {
		return ch, err
	}
	if k.kind == watchChildren {
		ahead, err := l.ahead(ctx, c)
		switch {
		case err != nil:
			return nil, err
		case len(ahead) != n:
			return nil, errAgain
		}
		return ch, nil
	}
	d, _, err := l.readData(ctx, k.path)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil, errAgain
	case err != nil:
		return nil, err
	case d.slotted:
		return nil, errAgain
	}
	return ch, nil
}
