package zookeeper

import (
	"context"
	"errors"
	"slices"

	"github.com/go-zookeeper/zk"
)

// chooseSlot picks the slot of a permit claim that its position admits
// (DESIGN.md, "The slot: in the claim's own record, chosen in sequence
// order"): once every child ahead has written its slot, the lowest one
// none of them has. It reads the records of the children ahead whose
// slot it does not know yet (a node's slot never changes); while one of
// them has none, it waits for the nearest such child to write it and
// answers errAgain (list again). A slot once chosen is the node's for
// good: a grant write whose reply was lost may have been applied and
// read by the claims behind.
func (l *Locker) chooseSlot(ctx context.Context, c *claim, ahead []child) error {
	if c.meta.slotted {
		return nil
	}
	used := make([]bool, c.typ.limit)
	pending := ""
	for _, k := range ahead {
		s, ok, err := l.slotOf(ctx, c, k)
		switch {
		case err != nil:
			return err
		case !ok:
			pending = k.name // the last one without a slot writes last
			continue
		}
		if int(s) < len(used) {
			used[s] = true
		}
	}
	if pending != "" {
		c.waited = true
		ch, err := l.armed(ctx, c, watchKey{watchData, c.dir + "/" + pending}, len(ahead))
		if err != nil {
			return err
		}
		return l.wait(ctx, c, ch)
	}
	s := slices.Index(used, false) // fewer than limit children ahead: one is free
	c.meta.slot, c.meta.slotted = uint16(s), true
	return nil
}

// readSlots learns the slots of the children ahead of a first waiter (the
// holders) before it waits, so that the hand-off that admits it reads
// none (DESIGN.md, "The slot"). A holder without a slot yet is read again
// at the hand-off.
func (l *Locker) readSlots(ctx context.Context, c *claim, ahead []child) error {
	for _, k := range ahead {
		if _, _, err := l.slotOf(ctx, c, k); err != nil {
			return err
		}
	}
	return nil
}

// slotOf is the slot of child k ahead of claim c, from c's memory or read
// from k's record (and remembered, if it has one); ok is false if it has
// none yet. A child gone meanwhile answers errAgain (list again).
func (l *Locker) slotOf(ctx context.Context, c *claim, k child) (slot uint16, ok bool, err error) {
	if s, ok := c.slots[k.name]; ok {
		return s, true, nil
	}
	l.slotReads.Add(1)
	d, _, err := l.readData(ctx, c.dir+"/"+k.name)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return 0, false, errAgain // released meanwhile: list again
	case err != nil || !d.slotted:
		return 0, false, err
	}
	if c.slots == nil {
		c.slots = make(map[string]uint16)
	}
	c.slots[k.name] = d.slot
	return d.slot, true, nil
}
