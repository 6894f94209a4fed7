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
	if c.slots == nil {
		c.slots = make(map[string]uint16)
	}
	used := make([]bool, c.typ.limit)
	pending := ""
	for _, k := range ahead {
		s, ok := c.slots[k.name]
		if !ok {
			d, _, err := l.readData(ctx, c.dir+"/"+k.name)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				return errAgain // released meanwhile: list again
			case err != nil:
				return err
			case !d.slotted:
				pending = k.name // the last one without a slot writes last
				continue
			}
			s = d.slot
			c.slots[k.name] = s
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
