package history

import (
	"fmt"
	"sort"
)

// Violation kinds of semaphores and read-write locks (CheckGrants);
// TokenOrder, DuplicateToken and Malformed are shared with the lock checks.
const (
	// OverLimit: more permits of a semaphore were live at one tick than its
	// limit (I1 with many holders).
	OverLimit ViolationKind = "over-limit"
	// SlotShared: two permits of a semaphore live at one tick had one slot.
	SlotShared ViolationKind = "slot-shared"
	// ReadWriteOverlap: a read lease and a write lease of a name were live
	// at one tick.
	ReadWriteOverlap ViolationKind = "read-write-overlap"
	// TwoWriters: two write leases of a name were live at one tick.
	TwoWriters ViolationKind = "two-writers"
)

// GrantResult is the verdict of CheckGrants.
type GrantResult struct {
	Violations []Violation
	// Omitted counts violations left out by the cap per kind.
	Omitted int
}

// OK reports whether the history passed every check.
func (r GrantResult) OK() bool { return ElectionResult(r).OK() }

// Has reports whether r holds a violation of kind k.
func (r GrantResult) Has(k ViolationKind) bool { return ElectionResult(r).Has(k) }

func (r GrantResult) String() string { return ElectionResult(r).String() }

// CheckGrants checks a history of semaphores and read-write locks from the
// holders' view (doc.go, "Many holders"). A grant is surely live from its
// Acquire's return to its last look that found it held: the store granted
// it before the return, and Done (which closes before the store can grant
// a conflicting lease, I3) had not closed at the look. On these intervals:
// never more than limit permits of a semaphore live at one tick, never two
// on one slot; never a read and a write, or two writes, of a name live at
// one tick. And the tokens of a name are distinct, and a write's token is
// greater than the token of every grant of its name returned before the
// write's Acquire was invoked. At most maxPerKind violations of each kind
// are listed (<= 0: 10).
func CheckGrants(h GrantHistory, maxPerKind int) GrantResult {
	if maxPerKind <= 0 {
		maxPerKind = 10
	}
	c := &grantChecker{h: h, checker: checker{max: maxPerKind, count: map[ViolationKind]int{}}}
	c.validate()
	if len(c.res.Violations) == 0 {
		for _, name := range c.names() {
			gs := c.granted(name)
			c.tokens(name, gs)
			if c.h.Grants[gs[0]].Mode == PermitMode {
				c.overLimit(name, gs)
			}
			c.overlaps(name, gs)
		}
	}
	return GrantResult{Violations: c.res.Violations, Omitted: c.res.Omitted}
}

type grantChecker struct {
	checker // for add; its history is unused
	h       GrantHistory
}

// dg describes grant i for messages.
func (c *grantChecker) dg(i int) string {
	g := c.h.Grants[i]
	s := fmt.Sprintf("grant #%d (worker %d, %s of %q, %s", i, g.Worker, g.Mode, g.Name, g.Outcome)
	if g.Outcome == OK {
		s += fmt.Sprintf(" token %d", g.Token)
		if g.Mode == PermitMode {
			s += fmt.Sprintf(" slot %d", g.Slot)
		}
	}
	s += fmt.Sprintf(" [%d, %d]", g.Call, g.Return)
	if g.LastLive != 0 {
		s += fmt.Sprintf(" live until %d", g.LastLive)
	}
	return s + ")"
}

func (c *grantChecker) validate() {
	family := map[string]Mode{} // name -> PermitMode or ReadMode (a read-write lock)
	limit := map[string]int{}
	for i, g := range c.h.Grants {
		f := g.Mode
		if f == WriteMode {
			f = ReadMode
		}
		switch {
		case g.Name == "":
			c.add(Malformed, "", []int{i}, "%s: empty name", c.dg(i))
		case g.Mode != PermitMode && g.Mode != ReadMode && g.Mode != WriteMode:
			c.add(Malformed, g.Name, []int{i}, "%s: unknown mode", c.dg(i))
		case family[g.Name] != "" && family[g.Name] != f:
			c.add(Malformed, g.Name, []int{i}, "%s: a name both a semaphore and a read-write lock", c.dg(i))
		case g.Mode == PermitMode && (g.Limit < 1 || limit[g.Name] != 0 && limit[g.Name] != g.Limit):
			c.add(Malformed, g.Name, []int{i}, "%s: limit %d (in force: %d)", c.dg(i), g.Limit, limit[g.Name])
		case g.Call <= 0:
			c.add(Malformed, g.Name, []int{i}, "%s: call tick %d is not positive", c.dg(i), g.Call)
		case g.Outcome != Pending && g.Return <= g.Call:
			c.add(Malformed, g.Name, []int{i}, "%s: returned at %d, not after its call", c.dg(i), g.Return)
		case g.Outcome != OK && g.Outcome != Failed && g.Outcome != Unknown && g.Outcome != Pending:
			c.add(Malformed, g.Name, []int{i}, "%s: an Acquire cannot have outcome %s", c.dg(i), g.Outcome)
		case g.Outcome == OK && g.Token == 0:
			c.add(Malformed, g.Name, []int{i}, "%s: granted with token 0", c.dg(i))
		case g.Outcome != OK && (g.LastLive != 0 || g.Token != 0):
			c.add(Malformed, g.Name, []int{i}, "%s: a token or a live lease without a grant", c.dg(i))
		case g.LastLive != 0 && g.LastLive <= g.Return:
			c.add(Malformed, g.Name, []int{i}, "%s: seen held at %d, before its Acquire returned", c.dg(i), g.LastLive)
		case g.Outcome == OK && g.Mode == PermitMode && (g.Slot < 0 || g.Slot >= g.Limit):
			c.add(Malformed, g.Name, []int{i}, "%s: slot outside [0, %d)", c.dg(i), g.Limit)
		}
		family[g.Name] = f
		if g.Mode == PermitMode && limit[g.Name] == 0 {
			limit[g.Name] = g.Limit
		}
	}
}

// names lists the names with a granted lease, sorted.
func (c *grantChecker) names() []string {
	seen := map[string]bool{}
	var names []string
	for _, g := range c.h.Grants {
		if g.Outcome == OK && !seen[g.Name] {
			seen[g.Name] = true
			names = append(names, g.Name)
		}
	}
	sort.Strings(names)
	return names
}

// granted lists the granted leases of name, in the order of their returns.
func (c *grantChecker) granted(name string) []int {
	var gs []int
	for i, g := range c.h.Grants {
		if g.Name == name && g.Outcome == OK {
			gs = append(gs, i)
		}
	}
	sort.Slice(gs, func(a, b int) bool { return c.h.Grants[gs[a]].Return < c.h.Grants[gs[b]].Return })
	return gs
}

// tokens checks that name's tokens are distinct and that each write's
// token is greater than every token returned before its Acquire's call.
func (c *grantChecker) tokens(name string, gs []int) {
	byToken := map[uint64]int{}
	for _, i := range gs {
		if j, ok := byToken[c.h.Grants[i].Token]; ok {
			c.add(DuplicateToken, name, []int{j, i}, "%s and %s have one token", c.dg(j), c.dg(i))
		}
		byToken[c.h.Grants[i].Token] = i
	}
	for _, w := range gs {
		if c.h.Grants[w].Mode != WriteMode {
			continue
		}
		for _, i := range gs {
			g := c.h.Grants[i]
			if g.Return >= c.h.Grants[w].Call {
				break // gs is in return order
			}
			if g.Token >= c.h.Grants[w].Token {
				c.add(TokenOrder, name, []int{i, w}, "%s returned before %s was invoked, with a token not smaller", c.dg(i), c.dg(w))
			}
		}
	}
}

// live reports whether grants i and j were both surely live at one tick:
// their intervals [Return, LastLive] meet.
func (c *grantChecker) live(i, j int) bool {
	a, b := c.h.Grants[i], c.h.Grants[j]
	if a.LastLive == 0 || b.LastLive == 0 {
		return false
	}
	return max(a.Return, b.Return) <= min(a.LastLive, b.LastLive)
}

// overlaps checks every pair of name's grants live at one tick: two
// permits on one slot, a read and a write, two writes.
func (c *grantChecker) overlaps(name string, gs []int) {
	for x, i := range gs {
		for _, j := range gs[x+1:] {
			if c.h.Grants[j].Return > c.h.Grants[i].LastLive {
				break // gs is in return order: no later grant meets i
			}
			if !c.live(i, j) {
				continue
			}
			a, b := c.h.Grants[i], c.h.Grants[j]
			switch {
			case a.Mode == PermitMode && a.Slot == b.Slot:
				c.add(SlotShared, name, []int{i, j}, "%s and %s live at once on one slot", c.dg(i), c.dg(j))
			case a.Mode == WriteMode && b.Mode == WriteMode:
				c.add(TwoWriters, name, []int{i, j}, "%s and %s live at once", c.dg(i), c.dg(j))
			case a.Mode == WriteMode || b.Mode == WriteMode:
				c.add(ReadWriteOverlap, name, []int{i, j}, "%s and %s live at once", c.dg(i), c.dg(j))
			}
		}
	}
}

// overLimit sweeps name's permits' live intervals in tick order and
// reports each tick at which more than the limit are live.
func (c *grantChecker) overLimit(name string, gs []int) {
	type event struct {
		at    int64
		grant int
		open  bool
	}
	var events []event
	for _, i := range gs {
		if g := c.h.Grants[i]; g.LastLive != 0 {
			events = append(events, event{g.Return, i, true}, event{g.LastLive, i, false})
		}
	}
	// Opens before closes at one tick: the intervals are closed.
	sort.Slice(events, func(a, b int) bool {
		if events[a].at != events[b].at {
			return events[a].at < events[b].at
		}
		return events[a].open && !events[b].open
	})
	live := map[int]bool{}
	limit := c.h.Grants[gs[0]].Limit
	for _, e := range events {
		if !e.open {
			delete(live, e.grant)
			continue
		}
		live[e.grant] = true
		if len(live) > limit {
			var ids []int
			for i := range live {
				ids = append(ids, i)
			}
			sort.Ints(ids)
			c.add(OverLimit, name, ids, "%d permits of limit %d live at tick %d, the last %s", len(ids), limit, e.at, c.dg(e.grant))
		}
	}
}
