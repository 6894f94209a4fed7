package history

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// lockState is the model's state of one name. See doc.go for the model.
type lockState struct {
	held bool // the store may hold a lease
	// token of that lease; 0 if it came from the pool of unknown grants
	// and no Inspect has told its token yet.
	token uint64
	next  uint64 // the next grant carries a token >= next
	last  uint64 // the greatest recorded grant token linearized so far
}

type modelInput struct {
	name  string
	kind  Kind
	token uint64 // the lease's token: Release, Refresh, Observe
	known bool   // Inspect: the reported token was returned by a recorded grant
	prev  uint64 // OK grant: the greatest recorded grant token below its own (0: none)
	pool  bool   // some grant of this name of unknown outcome was invoked before this op returned
	op    int    // index in the History
	desc  string // for the visualisation
}

type modelOutput struct {
	outcome Outcome
	token   uint64 // granted token (Acquire, TryAcquire), holder (Inspect)
}

// step is the sequential specification. A lease may end at any moment
// without an operation (expiry, session loss, its Locker closing); the model
// does not step that spontaneously but keeps the possibly-ended lease as
// "held" for as long as that lets more histories through, which is exact:
// every operation legal on a free name is legal, with an equally permissive
// result, when the name is held. Grants of unknown outcome are not steps
// either: an operation that needs the name held when it is not may be
// explained by one invoked before it returned (see doc.go).
func step(s lockState, in modelInput, out modelOutput) (bool, lockState) {
	switch in.kind {
	case Acquire, TryAcquire:
		if out.outcome == Held {
			if s.held {
				return true, s
			}
			if in.pool {
				s.held, s.token = true, 0
				return true, s
			}
			return false, s
		}
		// OK. Recorded grants are linearized in token order, each right
		// after its predecessor: every linearization has them so, and
		// saying it up front spares the search every other order.
		if out.token < s.next || out.token == 0 || s.last != in.prev {
			return false, s
		}
		s.held, s.token, s.next, s.last = true, out.token, out.token+1, out.token
		return true, s
	case Release, Refresh, Observe: // OK
		if !s.held || s.token != in.token || in.token == 0 {
			return false, s
		}
		if in.kind == Release {
			s.held, s.token = false, 0
		}
		return true, s
	case Inspect:
		if out.outcome != OK {
			s.held, s.token = false, 0
			return true, s
		}
		switch {
		case s.held && s.token == out.token:
			return true, s
		case in.known || out.token < s.next:
			return false, s
		case s.held && s.token == 0: // the unknown grant's token, now learnt
		case in.pool: // an unknown grant since the last known one
		default:
			return false, s
		}
		s.held, s.token, s.next = true, out.token, out.token+1
		return true, s
	}
	return false, s
}

func (s lockState) String() string {
	var h string
	switch {
	case !s.held:
		h = "free"
	case s.token == 0:
		h = "held by ?"
	default:
		h = fmt.Sprintf("held by %d", s.token)
	}
	return h + fmt.Sprintf(", next >= %d", s.next)
}

func partitionByName(ops []porcupine.Operation) [][]porcupine.Operation {
	byName := make(map[string][]porcupine.Operation)
	for _, op := range ops {
		n := op.Input.(modelInput).name
		byName[n] = append(byName[n], op)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([][]porcupine.Operation, len(names))
	for i, n := range names {
		parts[i] = byName[n]
	}
	return parts
}

var lockModel = porcupine.Model{
	Partition: partitionByName,
	Init:      func() any { return lockState{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(lockState), input.(modelInput), output.(modelOutput))
	},
	Hash: func(state any) uint64 {
		s := state.(lockState)
		h := s.token*0x9e3779b97f4a7c15 ^ s.next*0xbf58476d1ce4e5b9 ^ s.last*0x94d049bb133111eb
		if s.held {
			h ^= 1
		}
		return h
	},
	DescribeOperation:         func(input, _ any) string { return input.(modelInput).desc },
	DescribeState:             func(state any) string { return state.(lockState).String() },
	DescribeOperationMetadata: func(info any) string { return fmt.Sprint(info) },
}

// inModel reports whether op is a porcupine operation. Left out, and checked
// directly instead: Failed operations (no effect); Writes; grants of
// unknown outcome (see step); Release, Refresh and Observe that
// found the lease ended (always legal; they only forbid later reports that
// it is held, which HeldAfterEnd checks exactly); and Release, Refresh,
// Observe and Inspect of unknown outcome (a Release that may have happened
// is no stronger than the spontaneous end the model always allows; the
// others are reads).
func inModel(op Op) bool {
	switch op.Kind {
	case Acquire, TryAcquire:
		return op.Outcome == OK || op.Outcome == Held
	case Release, Refresh, Observe:
		return op.Outcome == OK
	case Inspect:
		return op.Outcome == OK || op.Outcome == NotHeld
	}
	return false
}

// unknownGrant reports whether op is a grant of unknown outcome.
func unknownGrant(op Op) bool {
	return op.Kind.grants() && (op.Outcome == Unknown || op.Outcome == Pending)
}

// toOperations converts h into porcupine operations, drawn on the rows of
// rowOf.
func toOperations(h History, known map[string]map[uint64]int, rowOf []int) []porcupine.Operation {
	firstUnknown := make(map[string]int64) // call of the first grant of unknown outcome
	for _, op := range h {
		if c, ok := firstUnknown[op.Name]; unknownGrant(op) && (!ok || op.Call < c) {
			firstUnknown[op.Name] = op.Call
		}
	}
	tokens := make(map[string][]uint64) // recorded grant tokens per name, sorted
	for name, m := range known {
		for t := range m {
			tokens[name] = append(tokens[name], t)
		}
		sort.Slice(tokens[name], func(a, b int) bool { return tokens[name][a] < tokens[name][b] })
	}
	var ops []porcupine.Operation
	for i, op := range h {
		if !inModel(op) {
			continue
		}
		in := modelInput{name: op.Name, kind: op.Kind, op: i, desc: op.short()}
		out := modelOutput{outcome: op.Outcome}
		switch op.Kind {
		case Acquire, TryAcquire, Inspect:
			out.token = op.Token
			_, in.known = known[op.Name][op.Token]
			ts := tokens[op.Name]
			if k := sort.Search(len(ts), func(k int) bool { return ts[k] >= op.Token }); k > 0 {
				in.prev = ts[k-1]
			}
		default:
			in.token = op.Token
		}
		c, ok := firstUnknown[op.Name]
		in.pool = ok && c < op.Return
		ops = append(ops, porcupine.Operation{
			ClientId: rowOf[i],
			Input:    in,
			Call:     op.Call,
			Output:   out,
			Return:   op.Return,
			Metadata: op.metadata(i),
		})
	}
	return ops
}

// rows assigns every operation a row of the visualisation: its client's ID
// when client IDs are small and non-negative, else a dense index, plus an
// extra row for the client whenever its operations would overlap on one.
func rows(h History) []int {
	order := make([]int, len(h))
	maxClient := 0
	dense := false
	for i, op := range h {
		order[i] = i
		maxClient = max(maxClient, op.Client)
		dense = dense || op.Client < 0 || op.Client > 1000
	}
	sort.SliceStable(order, func(a, b int) bool { return h[order[a]].Call < h[order[b]].Call })
	nextRow := maxClient + 1
	if dense {
		nextRow = 0
	}
	type row struct {
		id   int
		busy int64 // last tick used on it
	}
	rowsOf := make(map[int][]*row)
	out := make([]int, len(h))
	for _, i := range order {
		op := h[i]
		rs := rowsOf[op.Client]
		if len(rs) == 0 && !dense {
			rs = []*row{{id: op.Client}}
			rowsOf[op.Client] = rs
		}
		var r *row
		for _, c := range rs {
			if c.busy < op.Call {
				r = c
				break
			}
		}
		if r == nil {
			r = &row{id: nextRow}
			nextRow++
			rowsOf[op.Client] = append(rs, r)
		}
		r.busy = op.Call
		if op.Outcome != Pending {
			r.busy = op.Return
		}
		out[i] = r.id
	}
	return out
}

// short describes op for the visualisation.
func (op Op) short() string {
	var res string
	switch {
	case op.Outcome == OK && (op.Kind.grants() || op.Kind == Inspect):
		res = fmt.Sprintf("%d", op.Token)
	case op.Kind == Inspect && op.Outcome == NotHeld:
		res = "free"
	case op.Outcome == Pending || op.Outcome == Unknown:
		res = "?"
	default:
		res = op.Outcome.String()
	}
	switch op.Kind {
	case Release, Refresh, Observe, Write:
		return fmt.Sprintf("c%d %s(%d) -> %s", op.Client, op.Kind, op.Token, res)
	}
	return fmt.Sprintf("c%d %s -> %s", op.Client, op.Kind, res)
}

func (op Op) metadata(i int) string {
	s := fmt.Sprintf("#%d, client %d, called at %v", i, op.Client, op.CallAt)
	if op.Err != "" {
		s += ", error: " + op.Err
	}
	return s
}
