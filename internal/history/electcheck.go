package history

import (
	"fmt"
	"sort"
)

// Violation kinds of an election (CheckElection); TokenOrder,
// DuplicateToken and Malformed are shared with the lock checks.
const (
	// TwoLeaders: a term was seen held by its candidate after a term with
	// a greater token had been elected (I1, I3: the old leader's Done
	// closes before the new one is elected).
	TwoLeaders ViolationKind = "two-leaders"
	// ObservedBackward: an observer received an elected token smaller than
	// one it had received before.
	ObservedBackward ViolationKind = "observed-backward"
	// ObservedUngranted: an observer received a term that no Campaign (or
	// Proclaim) invoked before it explains, or with another token than its
	// Campaign returned.
	ObservedUngranted ViolationKind = "observed-ungranted"
)

// ElectionResult is the verdict of CheckElection.
type ElectionResult struct {
	Violations []Violation
	// Omitted counts violations left out by the cap per kind.
	Omitted int
}

// OK reports whether the history passed every check.
func (r ElectionResult) OK() bool { return len(r.Violations) == 0 && r.Omitted == 0 }

// Has reports whether r holds a violation of kind k.
func (r ElectionResult) Has(k ViolationKind) bool {
	return Result{Violations: r.Violations}.Has(k)
}

func (r ElectionResult) String() string {
	if r.OK() {
		return "ok"
	}
	s := fmt.Sprintf("%d violations", len(r.Violations)+r.Omitted)
	for _, v := range r.Violations {
		s += "\n  " + v.String()
	}
	if r.Omitted > 0 {
		s += fmt.Sprintf("\n  (%d more omitted)", r.Omitted)
	}
	return s
}

// CheckElection checks one election's history (doc.go, "Elections"):
// no term seen held after a greater token was elected; tokens increase in
// grant order and belong to one Campaign each; every observer's elected
// tokens never decrease, and every elected state it received names a
// Campaign or Proclaim invoked before, with that Campaign's token. At
// most maxPerKind violations of each kind are listed (<= 0: 10).
func CheckElection(h ElectionHistory, maxPerKind int) ElectionResult {
	if maxPerKind <= 0 {
		maxPerKind = 10
	}
	c := &electChecker{h: h, checker: checker{max: maxPerKind, count: map[ViolationKind]int{}}}
	c.validate()
	if len(c.res.Violations) > 0 {
		return ElectionResult{Violations: c.res.Violations, Omitted: c.res.Omitted}
	}
	c.index()
	c.sightings()
	c.tokenOrder()
	c.twoLeaders()
	return ElectionResult{Violations: c.res.Violations, Omitted: c.res.Omitted}
}

type electChecker struct {
	checker // for add; its history is unused
	h       ElectionHistory

	byValue  map[string]int    // Campaign value -> campaign
	proclaim map[string][2]int // proclaimed value -> (campaign, step)
	// token is each Campaign's token: returned, or learnt from sightings
	// (0: unknown).
	token []uint64
	// elected is the earliest tick by which each token was elected, with
	// what shows it ("campaign #i" or "sighting #j").
	elected map[uint64]evidence
}

type evidence struct {
	at  int64
	why string
}

// dc describes campaign i for messages.
func (c *electChecker) dc(i int) string {
	p := c.h.Campaigns[i]
	s := fmt.Sprintf("campaign #%d (candidate %d, %q, %s", i, p.Candidate, p.Value, p.Outcome)
	if p.Outcome == OK {
		s += fmt.Sprintf(" token %d", p.Token)
	}
	return s + fmt.Sprintf(" [%d, %d])", p.Call, p.Return)
}

// ds describes sighting j for messages.
func (c *electChecker) ds(j int) string {
	s := c.h.Sightings[j]
	return fmt.Sprintf("sighting #%d (observer %d stream %d: token %d %q at %d)", j, s.Observer, s.Stream, s.Token, s.Value, s.At)
}

func (c *electChecker) validate() {
	values := map[string]bool{}
	for i, p := range c.h.Campaigns {
		switch {
		case p.Call <= 0:
			c.add(Malformed, "", nil, "%s: call tick %d is not positive", c.dc(i), p.Call)
		case p.Outcome != Pending && p.Return <= p.Call:
			c.add(Malformed, "", nil, "%s: returned at %d, not after its call", c.dc(i), p.Return)
		case p.Outcome != OK && p.Outcome != Failed && p.Outcome != Unknown && p.Outcome != Pending:
			c.add(Malformed, "", nil, "%s: a campaign cannot have outcome %s", c.dc(i), p.Outcome)
		case p.Outcome == OK && p.Token == 0:
			c.add(Malformed, "", nil, "%s: elected with token 0", c.dc(i))
		case p.Outcome != OK && (p.LastLive != 0 || p.Token != 0):
			c.add(Malformed, "", nil, "%s: a token or a live term without an election", c.dc(i))
		case p.LastLive != 0 && p.LastLive <= p.Return:
			c.add(Malformed, "", nil, "%s: term seen held at %d, before its Campaign returned", c.dc(i), p.LastLive)
		case values[p.Value]:
			c.add(Malformed, "", nil, "%s: value %q campaigned twice", c.dc(i), p.Value)
		}
		values[p.Value] = true
		for _, s := range p.Proclaims {
			if values[s.Value] {
				c.add(Malformed, "", nil, "%s: value %q proclaimed after being used", c.dc(i), s.Value)
			}
			values[s.Value] = true
		}
	}
	for j, s := range c.h.Sightings {
		if s.At <= 0 {
			c.add(Malformed, "", nil, "%s: tick not positive", c.ds(j))
		}
	}
}

// index maps values to Campaigns and collects the elected evidence of
// every returned token.
func (c *electChecker) index() {
	c.byValue, c.proclaim = map[string]int{}, map[string][2]int{}
	c.token = make([]uint64, len(c.h.Campaigns))
	c.elected = map[uint64]evidence{}
	for i, p := range c.h.Campaigns {
		c.byValue[p.Value] = i
		for k, s := range p.Proclaims {
			c.proclaim[s.Value] = [2]int{i, k}
		}
		if p.Outcome == OK {
			c.token[i] = p.Token
			c.electedBy(p.Token, p.Return, c.dc(i))
		}
	}
	owner := map[uint64]int{}
	for i, t := range c.token {
		if t == 0 {
			continue
		}
		if o, dup := owner[t]; dup {
			c.add(DuplicateToken, "", nil, "token %d granted twice: %s and %s", t, c.dc(o), c.dc(i))
			continue
		}
		owner[t] = i
	}
}

func (c *electChecker) electedBy(token uint64, at int64, why string) {
	if e, ok := c.elected[token]; !ok || at < e.at {
		c.elected[token] = evidence{at, why}
	}
}

// sightings ties each elected state received to its Campaign, learns the
// tokens of Campaigns that returned none, and checks each observer's
// order.
func (c *electChecker) sightings() {
	owner := map[uint64]int{} // token -> campaign, as far as sightings show
	for i, t := range c.token {
		if t != 0 {
			owner[t] = i
		}
	}
	last := map[int]int{} // observer -> its sighting with the greatest token so far
	order := make([]int, len(c.h.Sightings))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return c.h.Sightings[order[a]].At < c.h.Sightings[order[b]].At })
	for _, j := range order {
		s := c.h.Sightings[j]
		if s.Token == 0 {
			continue
		}
		if k, seen := last[s.Observer]; seen && c.h.Sightings[k].Token > s.Token {
			c.add(ObservedBackward, "", nil, "observer %d went back from token %d to %d: %s after %s",
				s.Observer, c.h.Sightings[k].Token, s.Token, c.ds(j), c.ds(k))
		} else {
			last[s.Observer] = j
		}
		i, ok := c.explain(j)
		if !ok {
			continue
		}
		switch o, known := owner[s.Token]; {
		case known && o != i:
			c.add(DuplicateToken, "", nil, "token %d is %s's, yet %s shows it for %s", s.Token, c.dc(o), c.ds(j), c.dc(i))
		case c.token[i] != 0 && c.token[i] != s.Token:
			c.add(ObservedUngranted, "", nil, "%s shows token %d for %s, whose token is %d", c.ds(j), s.Token, c.dc(i), c.token[i])
		default:
			owner[s.Token], c.token[i] = i, s.Token
			c.electedBy(s.Token, s.At, c.ds(j))
		}
	}
}

// explain finds the Campaign whose value (or whose Proclaim's) sighting j
// shows, invoked before j was received; false (reported) if there is
// none.
func (c *electChecker) explain(j int) (int, bool) {
	s := c.h.Sightings[j]
	i, ok := c.byValue[s.Value]
	call := int64(0)
	if ok {
		call = c.h.Campaigns[i].Call
	} else if p, proclaimed := c.proclaim[s.Value]; proclaimed {
		i, ok = p[0], true
		call = c.h.Campaigns[i].Proclaims[p[1]].Call
	}
	switch {
	case !ok:
		c.add(ObservedUngranted, "", nil, "%s: no Campaign or Proclaim has value %q", c.ds(j), s.Value)
	case c.h.Campaigns[i].Outcome == Failed:
		c.add(ObservedUngranted, "", nil, "%s shows %s, which was refused", c.ds(j), c.dc(i))
	case call > s.At:
		c.add(ObservedUngranted, "", nil, "%s shows value %q before it was asked for at tick %d (%s)", c.ds(j), s.Value, call, c.dc(i))
	default:
		return i, true
	}
	return 0, false
}

// tokenOrder: a Campaign's token, returned or learnt, exceeds every token
// elected before the Campaign was invoked (I2).
func (c *electChecker) tokenOrder() {
	type seen struct {
		at    int64
		token uint64
		why   string
	}
	var all []seen
	for t, e := range c.elected {
		all = append(all, seen{e.at, t, e.why})
	}
	sort.Slice(all, func(a, b int) bool { return all[a].at < all[b].at })
	prefix := make([]seen, len(all)) // greatest token among all[:k+1]
	for k, s := range all {
		prefix[k] = s
		if k > 0 && prefix[k-1].token > s.token {
			prefix[k] = prefix[k-1]
		}
	}
	for i, p := range c.h.Campaigns {
		if c.token[i] == 0 {
			continue
		}
		k := sort.Search(len(all), func(k int) bool { return all[k].at >= p.Call })
		if k > 0 && prefix[k-1].token >= c.token[i] {
			c.add(TokenOrder, "", nil, "%s got token %d, not greater than token %d elected before it was invoked (%s)",
				c.dc(i), c.token[i], prefix[k-1].token, prefix[k-1].why)
		}
	}
}

// twoLeaders: no term is seen held after a greater token was elected.
func (c *electChecker) twoLeaders() {
	tokens := make([]uint64, 0, len(c.elected))
	for t := range c.elected {
		tokens = append(tokens, t)
	}
	sort.Slice(tokens, func(a, b int) bool { return tokens[a] < tokens[b] })
	first := make([]evidence, len(tokens)+1) // earliest election among tokens[k:]
	first[len(tokens)] = evidence{at: -1}
	for k := len(tokens) - 1; k >= 0; k-- {
		first[k] = c.elected[tokens[k]]
		if n := first[k+1]; n.at >= 0 && n.at < first[k].at {
			first[k] = n
		}
	}
	for i, p := range c.h.Campaigns {
		if p.LastLive == 0 {
			continue
		}
		k := sort.Search(len(tokens), func(k int) bool { return tokens[k] > p.Token })
		if e := first[k]; e.at >= 0 && e.at < p.LastLive {
			c.add(TwoLeaders, "", nil, "%s was seen held at tick %d, after a greater token was elected by tick %d (%s)",
				c.dc(i), p.LastLive, e.at, e.why)
		}
	}
}
