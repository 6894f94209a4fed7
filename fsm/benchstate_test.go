package fsm

import (
	"fmt"
	"testing"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// The state the benchmarks start from: built by applying commands, as a
// replica replaying its log would, at the highest protocol level.

// benchSizes are the numbers of idle held locks the benchmarks run with
// (issue 16: cost must not grow with the number of idle locks).
var benchSizes = []int{0, 10_000, 1_000_000}

// perSession is how many idle locks (or waiters) one session holds.
const perSession = 1000

// ownSessions is how many sessions newBenchState opens for the benchmarks'
// own use (open), before any lock exists: OpenSession scans every lock
// (State.owned), so a session opened in a state of a million locks costs
// about a tenth of a second (BenchmarkApply's op=open-close measures it).
const ownSessions = 128

// Session IDs: idle holders, idle waiters, and the sessions a benchmark
// opens for itself, in separate ranges.
const (
	holderBase = 1 << 32
	waiterBase = 2 << 32
	ownBase    = 1
	freshBase  = 3 << 32 // sessions opened while locks exist
)

// benchState is a State with the index and per-session request numbers
// its log has reached.
type benchState struct {
	s     *State
	index uint64
	seqs  map[uint64]uint64 // last seq per session
	own   uint64            // last of the own sessions handed out by open
	fresh uint64            // last session opened from freshBase
	// fixtures are what each benchmark set up in the state, kept for its
	// next run (-count runs a benchmark again on the same state).
	fixtures map[string]any
}

// reuse returns the fixture of key, made by mk on first use.
func reuse[T any](st *benchState, key string, mk func() T) T {
	if f, ok := st.fixtures[key]; ok {
		return f.(T)
	}
	f := mk()
	st.fixtures[key] = f
	return f
}

func newBenchState(tb testing.TB) *benchState {
	st := &benchState{s: New(), seqs: map[uint64]uint64{}, own: ownBase - 1, fresh: freshBase, fixtures: map[string]any{}}
	st.must(tb, cmdSetProtocol(uint32(Protocol)), fsmpb.Code_CODE_OK)
	for id := range uint64(ownSessions) {
		st.openSession(tb, ownBase+id)
	}
	return st
}

// apply applies cmd at the next index with a growing leader stamp.
func (st *benchState) apply(tb testing.TB, cmd *fsmpb.Command) (*fsmpb.Result, []Event) {
	st.index++
	cmd.StampUnixNano = int64(st.index)
	res, events, err := st.s.Apply(st.index, cmd)
	if err != nil {
		tb.Fatalf("apply at %d: %v", st.index, err)
	}
	return res, events
}

// must applies cmd and fails tb unless the result has code want.
func (st *benchState) must(tb testing.TB, cmd *fsmpb.Command, want fsmpb.Code) *fsmpb.Result {
	res, _ := st.apply(tb, cmd)
	if res.GetCode() != want {
		tb.Fatalf("index %d: %v, want %v", st.index, res.GetCode(), want)
	}
	return res
}

// next gives req the next seq of its session and acknowledges every
// earlier one, as a client with one request in flight does: the session
// caches one result.
func (st *benchState) next(req *fsmpb.Request) {
	seq := st.seqs[req.GetSession()] + 1
	st.seqs[req.GetSession()] = seq
	req.Seq, req.AckedBelow = seq, seq
}

// request applies cmd (whose request next numbers) and checks its code.
func (st *benchState) request(tb testing.TB, cmd *fsmpb.Command, want fsmpb.Code) *fsmpb.Result {
	st.next(reqOf(cmd))
	return st.must(tb, cmd, want)
}

// openSession opens session id.
func (st *benchState) openSession(tb testing.TB, id uint64) {
	st.must(tb, cmdOpen(id, sessTTL, "n1"), fsmpb.Code_CODE_OK)
}

// open returns one of the own sessions no benchmark has used yet.
func (st *benchState) open(tb testing.TB) uint64 {
	if st.own+1 >= ownBase+ownSessions {
		tb.Fatalf("all %d own sessions are in use", ownSessions)
	}
	st.own++
	return st.own
}

// openSessions opens the sessions from base that hold n locks or waiters,
// perSession each.
func (st *benchState) openSessions(tb testing.TB, base uint64, n int) {
	for i := 0; i < n; i += perSession {
		st.openSession(tb, base+uint64(i/perSession))
	}
}

// idleName is the name of idle lock i.
func idleName(i int) string { return fmt.Sprintf("idle/%07d", i) }

// holdIdle grants n idle session leases, idleName(0) to idleName(n-1),
// perSession to each holder session, which openSessions(holderBase, n)
// opened.
func (st *benchState) holdIdle(tb testing.TB, n int) {
	for i := range n {
		sess := uint64(holderBase + i/perSession)
		st.request(tb, cmdAcquire(sess, 0, idleName(i)), fsmpb.Code_CODE_GRANTED)
	}
}

// queueIdle queues one waiter on each of the n idle locks holdIdle
// granted, perSession per waiter session, which openSessions(waiterBase,
// n) opened.
func (st *benchState) queueIdle(tb testing.TB, n int) {
	for i := range n {
		sess := uint64(waiterBase + i/perSession)
		st.request(tb, cmdAcquire(sess, 0, idleName(i)), fsmpb.Code_CODE_QUEUED)
	}
}

// withIdle returns a state holding n idle locks.
func withIdle(tb testing.TB, n int) *benchState {
	st := newBenchState(tb)
	st.openSessions(tb, holderBase, n)
	st.holdIdle(tb, n)
	return st
}
