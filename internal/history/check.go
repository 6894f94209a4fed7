package history

import (
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Options configures Check. The zero value is ready to use.
type Options struct {
	// Dir receives the failure files. Default: os.TempDir().
	Dir string
	// Prefix starts the failure files' names (path separators and other
	// unusual characters become '_'). Default: "quorumlock-history".
	Prefix string
	// Timeout bounds all of one Check's porcupine searches together: the
	// check of every name, then on failure the explanation and the
	// visualisation. Running out during the check is a CheckIncomplete
	// violation. Proving a long history illegal can take porcupine much
	// longer than accepting a legal one. Default: 1 minute.
	Timeout time.Duration
	// MaxViolations caps the violations reported per kind; the rest are
	// counted in Result.Omitted. Default: 10.
	MaxViolations int
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Prefix == "" {
		o.Prefix = "quorumlock-history"
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.MaxViolations <= 0 {
		o.MaxViolations = 10
	}
	return o
}

// ViolationKind names the property a Violation breaks.
type ViolationKind string

// Violation kinds.
const (
	// Malformed: the history itself is inconsistent (return before call,
	// an outcome the kind cannot have, a missing token). Nothing else is
	// checked.
	Malformed ViolationKind = "malformed"
	// Linearizability: no linearization of a name's operations satisfies
	// the lock model (see doc.go).
	Linearizability ViolationKind = "linearizability"
	// CheckIncomplete: the linearizability search ran out of time.
	CheckIncomplete ViolationKind = "check-incomplete"
	// TokenOrder: a grant's token is not greater than a token granted (or
	// reported by Inspect) before the grant was invoked (I2).
	TokenOrder ViolationKind = "token-order"
	// DuplicateToken: two grants of a name carry the same token (I2).
	DuplicateToken ViolationKind = "duplicate-token"
	// HeldAfterEnd: a lease was reported held after it had provably ended:
	// after a greater token was granted or reported, after its Release
	// succeeded, after Inspect reported the name free, or (for its client's
	// own reports) after its client was told it had ended (I1, I3).
	HeldAfterEnd ViolationKind = "held-after-end"
	// UngrantedToken: a token was used (an accepted write, a successful
	// Release, Refresh or Observe) that no recorded grant returned, or
	// before the grant that returned it was invoked.
	UngrantedToken ViolationKind = "ungranted-token"
	// FenceStale: the fence accepted a token smaller than one it had
	// accepted before.
	FenceStale ViolationKind = "fence-stale"
	// FenceOverlap: two accepted writes with different tokens overlapped.
	FenceOverlap ViolationKind = "fence-overlap"
)

// Violation is one broken property. Ops are indices into the History.
type Violation struct {
	Kind ViolationKind `json:"kind"`
	Name string        `json:"name,omitempty"`
	Ops  []int         `json:"ops,omitempty"`
	Msg  string        `json:"msg"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s", v.Kind, v.Msg)
}

// Files are the failure files Check wrote.
type Files struct {
	Visualization string // porcupine's HTML visualisation
	History       string // the History as JSON (json.Unmarshal into History to replay)
	Report        string // violations and the history as text
}

// Result is the verdict of Check.
type Result struct {
	// Linearizable is porcupine's verdict on the lock model: Ok, Illegal or
	// Unknown (timed out); empty if the history was malformed.
	Linearizable porcupine.CheckResult
	Violations   []Violation
	// Omitted counts violations left out by Options.MaxViolations.
	Omitted int
	// Files are set when the check failed and the files were written;
	// FileErr says why they could not be.
	Files   Files
	FileErr error
}

// OK reports whether the history passed every check.
func (r Result) OK() bool {
	return len(r.Violations) == 0 && r.Omitted == 0 && r.Linearizable == porcupine.Ok
}

// Has reports whether r holds a violation of kind k.
func (r Result) Has(k ViolationKind) bool {
	for _, v := range r.Violations {
		if v.Kind == k {
			return true
		}
	}
	return false
}

// Check verifies h: linearizability against the lock model per name, and
// the direct checks on tokens, witnesses and fence writes (see doc.go). If
// anything fails it writes the failure files (see Files) to opts.Dir.
func Check(h History, opts Options) Result {
	opts = opts.withDefaults()
	deadline := time.Now().Add(opts.Timeout)
	c := &checker{h: h, max: opts.MaxViolations, count: make(map[ViolationKind]int)}
	var ops []porcupine.Operation
	rowOf := rows(h)
	c.validate()
	wellFormed := len(c.res.Violations) == 0
	if wellFormed {
		byName := make(map[string][]int)
		for i, op := range h {
			byName[op.Name] = append(byName[op.Name], i)
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		known := make(map[string]map[uint64]int)
		for _, n := range names {
			known[n] = c.checkName(n, byName[n])
		}
		ops = toOperations(h, known, rowOf)
		c.linearizability(ops, deadline)
	}
	res := c.res
	if !res.OK() {
		res.Files, res.FileErr = writeFiles(opts, h, res, ops, rowOf, wellFormed, c.verbose, deadline)
	}
	return res
}

type checker struct {
	h     History
	max   int
	count map[ViolationKind]int
	res   Result
	// verbose holds explain's search of each illegal name, for the
	// visualisation to reuse.
	verbose map[string]porcupine.LinearizationInfo
}

func (c *checker) add(kind ViolationKind, name string, ops []int, format string, args ...any) {
	c.count[kind]++
	if c.count[kind] > c.max {
		c.res.Omitted++
		return
	}
	c.res.Violations = append(c.res.Violations, Violation{Kind: kind, Name: name, Ops: ops, Msg: fmt.Sprintf(format, args...)})
}

// d describes op i for messages.
func (c *checker) d(i int) string { return fmt.Sprintf("#%d (%s)", i, c.h[i]) }

var allowed = map[Kind][]Outcome{
	Acquire:    {Pending, OK, Held, Failed, Unknown},
	TryAcquire: {Pending, OK, Held, Failed, Unknown},
	Release:    {Pending, OK, NotHeld, Failed, Unknown},
	Refresh:    {Pending, OK, NotHeld, Failed, Unknown},
	Observe:    {Pending, OK, NotHeld},
	Inspect:    {Pending, OK, NotHeld, Failed, Unknown},
	Write:      {Pending, OK, Rejected, Failed, Unknown},
}

func (c *checker) validate() {
	for i, op := range c.h {
		outs, ok := allowed[op.Kind]
		switch {
		case !ok:
			c.add(Malformed, op.Name, []int{i}, "#%d: invalid kind %d", i, op.Kind)
			continue
		case op.Name == "" && op.Outcome != Failed:
			c.add(Malformed, op.Name, []int{i}, "%s: empty name", c.d(i))
		case op.Call <= 0:
			c.add(Malformed, op.Name, []int{i}, "%s: call tick %d is not positive", c.d(i), op.Call)
		case op.Outcome != Pending && op.Return <= op.Call:
			c.add(Malformed, op.Name, []int{i}, "%s: returned at %d, not after its call at %d", c.d(i), op.Return, op.Call)
		}
		valid := false
		for _, o := range outs {
			valid = valid || o == op.Outcome
		}
		if !valid {
			c.add(Malformed, op.Name, []int{i}, "%s: a %s cannot have outcome %s", c.d(i), op.Kind, op.Outcome)
		}
		needsToken := op.Kind == Release || op.Kind == Refresh || op.Kind == Observe || op.Kind == Write ||
			(op.Outcome == OK && (op.Kind.grants() || op.Kind == Inspect))
		if needsToken && op.Token == 0 && op.Outcome != Pending && op.Outcome != Failed {
			c.add(Malformed, op.Name, []int{i}, "%s: token 0", c.d(i))
		}
	}
}

// mark is the earliest known moment (a Return or Call tick) at which
// something was true, with the op that shows it; op -1: never.
type mark struct {
	at int64
	op int
}

var never = mark{at: math.MaxInt64, op: -1}

func earliest(a, b mark) mark {
	if b.at < a.at {
		return b
	}
	return a
}

// checkName runs the direct checks on the operations idx of one name and
// returns its granted tokens (token -> first grant).
func (c *checker) checkName(name string, idx []int) map[uint64]int {
	h := c.h
	sort.SliceStable(idx, func(a, b int) bool { return h[idx[a]].Call < h[idx[b]].Call })

	grants := make(map[uint64]int) // token -> first grant op
	var seen []int                 // OK grants and OK inspects: a token existed by their Return
	released := make(map[uint64]mark)
	toldEnded := make(map[uint64]mark) // NotHeld of Release, Refresh, Observe
	var free []int                     // Inspect -> NotHeld
	var clientWitness, storeWitness, writes []int
	for _, i := range idx {
		op := h[i]
		switch {
		case op.Kind.grants() && op.Outcome == OK:
			if g, dup := grants[op.Token]; dup {
				c.add(DuplicateToken, name, []int{g, i}, "%q: token %d granted twice: %s and %s", name, op.Token, c.d(g), c.d(i))
			} else {
				grants[op.Token] = i
			}
			seen = append(seen, i)
		case op.Kind == Inspect && op.Outcome == OK:
			seen = append(seen, i)
			storeWitness = append(storeWitness, i)
		case op.Kind == Inspect && op.Outcome == NotHeld:
			free = append(free, i)
		case op.Outcome == OK && (op.Kind == Release || op.Kind == Refresh || op.Kind == Observe):
			clientWitness = append(clientWitness, i)
			if op.Kind == Release {
				released[op.Token] = earliest(get(released, op.Token), mark{op.Return, i})
			}
		case op.Outcome == NotHeld && (op.Kind == Release || op.Kind == Refresh || op.Kind == Observe):
			toldEnded[op.Token] = earliest(get(toldEnded, op.Token), mark{op.Return, i})
		case op.Kind == Write && op.Outcome == OK:
			writes = append(writes, i)
		}
	}

	// TokenOrder: a grant's token exceeds every token seen before its call.
	byReturn := append([]int(nil), seen...)
	sort.SliceStable(byReturn, func(a, b int) bool { return h[byReturn[a]].Return < h[byReturn[b]].Return })
	prefixMax := make([]int, len(byReturn)) // op with the greatest token among byReturn[:k+1]
	for k, i := range byReturn {
		prefixMax[k] = i
		if k > 0 && h[prefixMax[k-1]].Token >= h[i].Token {
			prefixMax[k] = prefixMax[k-1]
		}
	}
	for _, i := range idx {
		op := h[i]
		if !op.Kind.grants() || op.Outcome != OK {
			continue
		}
		k := sort.Search(len(byReturn), func(k int) bool { return h[byReturn[k]].Return >= op.Call })
		if k == 0 {
			continue
		}
		if p := prefixMax[k-1]; h[p].Token >= op.Token {
			c.add(TokenOrder, name, []int{p, i}, "%q: %s was granted token %d, not greater than token %d of %s which returned before it was invoked",
				name, c.d(i), op.Token, h[p].Token, c.d(p))
		}
	}

	// Evidence that lease a has ended. newer(a): a greater token was seen.
	byToken := append([]int(nil), seen...)
	sort.SliceStable(byToken, func(a, b int) bool { return h[byToken[a]].Token < h[byToken[b]].Token })
	suffixNewer := make([]mark, len(byToken)+1)
	suffixNewer[len(byToken)] = never
	for k := len(byToken) - 1; k >= 0; k-- {
		i := byToken[k]
		suffixNewer[k] = earliest(suffixNewer[k+1], mark{h[i].Return, i})
	}
	newer := func(a uint64) mark {
		k := sort.Search(len(byToken), func(k int) bool { return h[byToken[k]].Token > a })
		return suffixNewer[k]
	}
	// freeAfter(a): Inspect reported the name free, invoked after a's grant returned.
	suffixFree := make([]mark, len(free)+1) // free is in Call order
	suffixFree[len(free)] = never
	for k := len(free) - 1; k >= 0; k-- {
		i := free[k]
		suffixFree[k] = earliest(suffixFree[k+1], mark{h[i].Return, i})
	}
	freeAfter := func(a uint64) mark {
		g, ok := grants[a]
		if !ok {
			return never
		}
		k := sort.Search(len(free), func(k int) bool { return h[free[k]].Call > h[g].Return })
		return suffixFree[k]
	}
	storeEnd := func(a uint64) mark {
		return earliest(earliest(newer(a), get(released, a)), freeAfter(a))
	}

	for _, w := range clientWitness {
		a := h[w].Token
		if e := earliest(storeEnd(a), get(toldEnded, a)); h[w].Call > e.at {
			c.add(HeldAfterEnd, name, []int{e.op, w}, "%q: lease %d reported held by %s after %s: %s",
				name, a, c.d(w), c.endReason(e.op, a), c.d(e.op))
		}
	}
	for _, w := range storeWitness {
		a := h[w].Token
		if e := storeEnd(a); h[w].Call > e.at {
			c.add(HeldAfterEnd, name, []int{e.op, w}, "%q: Inspect %s reported lease %d held after %s: %s",
				name, c.d(w), a, c.endReason(e.op, a), c.d(e.op))
		}
	}

	// UngrantedToken.
	for _, i := range idx {
		op := h[i]
		if op.Outcome != OK || (op.Kind != Write && op.Kind != Release && op.Kind != Refresh && op.Kind != Observe) {
			continue
		}
		g, ok := grants[op.Token]
		switch {
		case !ok:
			c.add(UngrantedToken, name, []int{i}, "%q: %s uses token %d, which no recorded grant returned", name, c.d(i), op.Token)
		case op.Call < h[g].Call:
			c.add(UngrantedToken, name, []int{g, i}, "%q: %s uses token %d before %s, its grant, was invoked", name, c.d(i), op.Token, c.d(g))
		}
	}

	// FenceStale and FenceOverlap, on accepted writes in admission order.
	var maxW = -1
	var active []int
	for _, i := range writes {
		op := h[i]
		if maxW >= 0 && op.Token < h[maxW].Token {
			c.add(FenceStale, name, []int{maxW, i}, "%q: the fence accepted token %d in %s after accepting token %d in %s",
				name, op.Token, c.d(i), h[maxW].Token, c.d(maxW))
		}
		if maxW < 0 || op.Token > h[maxW].Token {
			maxW = i
		}
		still := active[:0]
		for _, a := range active {
			if h[a].Return >= op.Call {
				still = append(still, a)
			}
		}
		active = still
		for _, a := range active {
			if h[a].Token != op.Token {
				c.add(FenceOverlap, name, []int{a, i}, "%q: accepted writes with tokens %d and %d overlap: %s and %s",
					name, h[a].Token, op.Token, c.d(a), c.d(i))
			}
		}
		active = append(active, i)
	}
	return grants
}

func get(m map[uint64]mark, k uint64) mark {
	if v, ok := m[k]; ok {
		return v
	}
	return never
}

func (c *checker) endReason(i int, a uint64) string {
	op := c.h[i]
	switch {
	case op.Kind.grants():
		return fmt.Sprintf("token %d had been granted", op.Token)
	case op.Kind == Inspect && op.Outcome == OK:
		return fmt.Sprintf("Inspect had reported token %d", op.Token)
	case op.Kind == Inspect:
		return "Inspect had reported the name free"
	case op.Kind == Release && op.Outcome == OK:
		return fmt.Sprintf("lease %d had been released", a)
	}
	return fmt.Sprintf("its client had been told lease %d ended", a)
}

// linearizability checks each name's operations with porcupine, all names
// within one timeout, and explains the illegal ones. The plain check is
// fast; the verbose one, which keeps partial linearizations for the
// explanation and the visualisation, copies the search stack on every
// backtrack (quadratic on long histories), so it only runs on failure.
func (c *checker) linearizability(ops []porcupine.Operation, deadline time.Time) {
	c.res.Linearizable = porcupine.Ok
	var illegal [][]porcupine.Operation
	for _, part := range partitionByName(ops) {
		name := part[0].Input.(modelInput).name
		verdict := porcupine.Unknown
		if left := time.Until(deadline); left > 0 {
			verdict = porcupine.CheckOperationsTimeout(lockModel, part, left)
		}
		switch verdict {
		case porcupine.Illegal:
			c.res.Linearizable = porcupine.Illegal
			illegal = append(illegal, part)
		case porcupine.Unknown:
			if c.res.Linearizable == porcupine.Ok {
				c.res.Linearizable = porcupine.Unknown
			}
			c.add(CheckIncomplete, name, nil, "%q: the linearizability check of its %d operations ran out of time (Options.Timeout); raise it or record a shorter history",
				name, len(part))
		}
	}
	for _, part := range illegal {
		c.explain(part, deadline)
	}
}

// explain reports an illegal partition, naming the operation the longest
// linearizable prefix could not get past.
func (c *checker) explain(part []porcupine.Operation, deadline time.Time) {
	name := part[0].Input.(modelInput).name
	verdict := porcupine.Unknown
	var info porcupine.LinearizationInfo
	if left := time.Until(deadline); left > 0 {
		verdict, info = porcupine.CheckOperationsVerbose(lockModel, part, left)
		if c.verbose == nil {
			c.verbose = make(map[string]porcupine.LinearizationInfo)
		}
		c.verbose[name] = info
	}
	var longest []int
	if verdict == porcupine.Illegal {
		for _, l := range info.PartialLinearizations()[0] {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	if verdict != porcupine.Illegal || len(longest) == len(part) {
		c.add(Linearizability, name, nil, "%q: not linearizable (no details: out of time for the verbose search)", name)
		return
	}
	state := lockState{}
	placed := make(map[int]bool, len(longest))
	for _, id := range longest {
		_, state = step(state, part[id].Input.(modelInput), part[id].Output.(modelOutput))
		placed[id] = true
	}
	// The first operation to return among those not placed is the one the
	// search could not get past.
	stuck := -1
	for id, op := range part {
		if !placed[id] && (stuck < 0 || op.Return < part[stuck].Return) {
			stuck = id
		}
	}
	si := part[stuck].Input.(modelInput).op
	involved := []int{si}
	after := "from the initial state"
	if len(longest) > 0 {
		li := part[longest[len(longest)-1]].Input.(modelInput).op
		involved = []int{li, si}
		after = fmt.Sprintf("after %s", c.d(li))
	}
	c.add(Linearizability, name, involved,
		"%q: not linearizable: the longest linearizable prefix has %d of %d operations and ends %s in state %q; %s cannot follow",
		name, len(longest), len(part), after, state, c.d(si))
}
