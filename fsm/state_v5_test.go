package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Protocol 5 (DESIGN.md, "Protocol 5"): semaphores, read-write locks and
// elections.

// v5 drives a state at level 5: sessions 1..n opened, then SetProtocol{5};
// apply applies the next entry and checks the invariants after it.
type v5 struct {
	t     *testing.T
	s     *State
	index uint64
	seq   map[uint64]uint64
}

func newV5(t *testing.T, n int) *v5 {
	t.Helper()
	cmds := opens(n, cmdSetProtocol(5))
	return &v5{t: t, s: mustApply(t, cmds...), index: uint64(len(cmds)), seq: map[uint64]uint64{}}
}

func (v *v5) apply(cmd *fsmpb.Command) (*fsmpb.Result, []Event) {
	v.t.Helper()
	v.index++
	res, events, err := v.s.Apply(v.index, cmd)
	require.NoError(v.t, err)
	requireInvariants(v.t, v.s)
	return res, events
}

// next is session's next seq.
func (v *v5) next(session uint64) uint64 {
	v.seq[session]++
	return v.seq[session]
}

func (v *v5) acquire(session uint64, name string, opts ...acqOpt) (*fsmpb.Result, []Event) {
	v.t.Helper()
	return v.apply(cmdAcquire(session, v.next(session), name, opts...))
}

func (v *v5) release(session uint64, name string, token uint64) (*fsmpb.Result, []Event) {
	v.t.Helper()
	return v.apply(cmdRelease(session, v.next(session), name, token))
}

func (v *v5) proclaim(session uint64, name string, token uint64, value string) (*fsmpb.Result, []Event) {
	v.t.Helper()
	return v.apply(&fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{
		Req: rq(session, v.next(session)), Name: name, Token: token, Value: value,
	}}})
}

// kinds lists the events' kinds with their names and tokens, for
// assertions that care about the order of what happened.
func kinds(events []Event) []string {
	var out []string
	for _, ev := range events {
		switch ev.Kind {
		case EventGranted:
			out = append(out, fmt.Sprintf("granted %s %d slot %d", ev.Name, ev.Token, ev.Slot))
		case EventEnded:
			out = append(out, fmt.Sprintf("ended %s %d", ev.Name, ev.Token))
		case EventWithdrawn:
			out = append(out, fmt.Sprintf("withdrawn %s %d", ev.Name, ev.Claim))
		case EventQueued:
			out = append(out, fmt.Sprintf("queued %s %d", ev.Name, ev.Claim))
		case EventProclaimed:
			out = append(out, fmt.Sprintf("proclaimed %s %d %q", ev.Name, ev.Token, ev.Value))
		}
	}
	return out
}

// Sessions 4 and 5 of opens (1 to 3 are s1..s3).
const (
	s4 = 4
	s5 = 5
)

var (
	read  = withMode(fsmpb.Mode_MODE_READ)
	write = withMode(fsmpb.Mode_MODE_WRITE)
)

func TestState_MaxPermitsIsLocks(t *testing.T) {
	assert.Equal(t, lock.MaxPermits, MaxPermits)
}

func TestState_V5BelowLevel5IsUnsupported(t *testing.T) {
	s := mustApply(t, opens(1, cmdSetProtocol(4))...)
	before := mustSnapshot(t, s)
	for _, cmd := range []*fsmpb.Command{
		cmdAcquire(s1, 1, "x", withSemaphore(2)),
		cmdAcquire(s1, 2, "x", read),
		cmdAcquire(s1, 3, "x", withValue("v")),
		{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{Req: rq(s1, 4), Name: "x", Token: 1}}},
	} {
		assert.Equal(t, 5, Needs(cmd))
		got, events := applyOK(t, s, 10, cmd)
		assertResult(t, res(fsmpb.Code_CODE_UNSUPPORTED), got)
		assert.Empty(t, events)
	}
	assert.Equal(t, before, mustSnapshot(t, s), "nothing changed, not even the request cache")
	assert.Equal(t, 1, Needs(cmdAcquire(s1, 5, "x")), "a plain Acquire is a mutex's, as always")
}

func TestState_Semaphore(t *testing.T) {
	v := newV5(t, 4)
	sem := withSemaphore(2)
	r1, ev := v.acquire(s1, "s", sem)
	assert.Equal(t, fsmpb.Code_CODE_GRANTED, r1.GetCode())
	assert.Equal(t, []string{fmt.Sprintf("granted s %d slot 0", v.index)}, kinds(ev))
	r2, _ := v.acquire(s2, "s", sem)
	require.Equal(t, fsmpb.Code_CODE_GRANTED, r2.GetCode(), "two permits of limit 2")
	assert.Equal(t, uint32(1), r2.GetSlot())
	assert.Greater(t, r2.GetToken(), r1.GetToken())

	try, _ := v.acquire(s3, "s", sem, withTry())
	assertResult(t, res(fsmpb.Code_CODE_HELD), try)
	q3, _ := v.acquire(s3, "s", sem)
	assert.Equal(t, fsmpb.Code_CODE_QUEUED, q3.GetCode())
	q4, _ := v.acquire(s4, "s", sem)
	assert.Equal(t, fsmpb.Code_CODE_QUEUED, q4.GetCode())

	li := v.s.Lock("s")
	assert.Equal(t, fsmpb.LockType_LOCK_TYPE_SEMAPHORE, li.Type)
	assert.Equal(t, 2, li.Limit)
	assert.Equal(t, 2, li.Waiters)
	require.Len(t, li.Holders, 2)
	assert.Equal(t, r1.GetToken(), li.Token, "the top-level fields describe the first holder")

	// The permit on slot 0 ends: the head of the queue (s3) takes slot 0
	// in the same entry; FIFO, so s4 waits.
	_, ev = v.release(s1, "s", r1.GetToken())
	assert.Equal(t, []string{
		fmt.Sprintf("ended s %d", r1.GetToken()),
		fmt.Sprintf("granted s %d slot 0", v.index),
	}, kinds(ev))
	assert.Equal(t, []uint64{q4.GetClaim()}, queueOf(v.s, "s"))

	// A limit other than the one in force, or another type: MISMATCH
	// with the lock's type and limit, nothing queued.
	for _, opt := range []acqOpt{withSemaphore(3), read, withValue("v"), func(*fsmpb.Acquire) {}} {
		mis, ev := v.acquire(s1, "s", opt)
		assertResult(t, &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: fsmpb.LockType_LOCK_TYPE_SEMAPHORE, Limit: 2}, mis)
		assert.Empty(t, ev)
	}
	assert.Equal(t, []uint64{q4.GetClaim()}, queueOf(v.s, "s"))

	// Once the name is free it may be used as any type.
	for _, h := range v.s.Lock("s").Holders {
		v.release(h.Session, "s", h.Token)
	}
	require.True(t, v.s.Lock("s").Held, "s4 was granted")
	v.release(s4, "s", v.s.Lock("s").Token)
	require.False(t, v.s.Lock("s").Held)
	m, _ := v.acquire(s1, "s")
	assert.Equal(t, fsmpb.Code_CODE_GRANTED, m.GetCode())
	assert.Equal(t, fsmpb.LockType_LOCK_TYPE_MUTEX, v.s.Lock("s").Type)
}

func TestState_SemaphoreSessionEnds(t *testing.T) {
	// One session with two TTL permits of one name: its expiry leaves both
	// (TTL leases outlive the session), counted twice as orphans, so the
	// ID is not free until both end.
	v := newV5(t, 2)
	v.apply(cmdSetProtocol(5))
	p1, _ := v.acquire(s1, "s", withSemaphore(3), withTTL(time.Second))
	p2, _ := v.acquire(s1, "s", withSemaphore(3), withTTL(time.Second))
	v.acquire(s1, "s", withSemaphore(3)) // a session permit: ends with the session
	_, ev := v.apply(cmdExpireSession(s1))
	assert.Equal(t, []string{fmt.Sprintf("ended s %d", p2.GetToken()+1)}, kinds(ev))
	assert.Equal(t, map[string]int{"s": 2}, v.s.orphans[s1])
	v.release(s2, "s", p1.GetToken()) // anyone's by token once the session is gone
	assert.Equal(t, map[string]int{"s": 1}, v.s.orphans[s1])
	reopen, _ := v.apply(cmdOpenClientAs(s1))
	assertResult(t, res(fsmpb.Code_CODE_HELD), reopen)
}

// cmdOpenClientAs opens a client session under id (its secret k(id)).
func cmdOpenClientAs(id uint64) *fsmpb.Command {
	return cmdOpenClient(id, k(byte(id)), "client")
}

func TestState_ReadWrite(t *testing.T) {
	v := newV5(t, 5)
	ra, _ := v.acquire(s1, "rw", read)
	rb, _ := v.acquire(s2, "rw", read)
	require.Equal(t, fsmpb.Code_CODE_GRANTED, ra.GetCode())
	require.Equal(t, fsmpb.Code_CODE_GRANTED, rb.GetCode(), "readers together")
	w, _ := v.acquire(s3, "rw", write)
	require.Equal(t, fsmpb.Code_CODE_QUEUED, w.GetCode(), "a writer waits for the readers")
	rc, _ := v.acquire(s4, "rw", read)
	require.Equal(t, fsmpb.Code_CODE_QUEUED, rc.GetCode(), "a reader behind a queued writer waits (writer preference)")
	try, _ := v.acquire(s5, "rw", read, withTry())
	assertResult(t, res(fsmpb.Code_CODE_HELD), try)

	_, ev := v.release(s1, "rw", ra.GetToken())
	assert.Equal(t, []string{fmt.Sprintf("ended rw %d", ra.GetToken())}, kinds(ev), "one reader left: the writer still waits")
	_, ev = v.release(s2, "rw", rb.GetToken())
	wTok := v.index
	assert.Equal(t, []string{fmt.Sprintf("ended rw %d", rb.GetToken()), fmt.Sprintf("granted rw %d slot 0", wTok)}, kinds(ev))
	assert.Greater(t, wTok, rb.GetToken(), "a writer's token is above every earlier reader's")
	mis, _ := v.acquire(s5, "rw", withSemaphore(1))
	assertResult(t, &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: fsmpb.LockType_LOCK_TYPE_READ_WRITE}, mis)
	_, ev = v.release(s3, "rw", wTok)
	assert.Equal(t, []string{fmt.Sprintf("ended rw %d", wTok), fmt.Sprintf("granted rw %d slot 0", v.index)}, kinds(ev))
}

func TestState_ReadWriteHandOffs(t *testing.T) {
	// A writer holds; the queue is R, R, W, R. Its release grants the two
	// readers at the head in one entry, with distinct tokens (index,
	// index+1), and the writer and the last reader wait.
	v := newV5(t, 5)
	w1, _ := v.acquire(s1, "rw", write)
	v.acquire(s2, "rw", read)
	v.acquire(s3, "rw", read)
	w2, _ := v.acquire(s4, "rw", write)
	r4, _ := v.acquire(s5, "rw", read)
	_, ev := v.release(s1, "rw", w1.GetToken())
	i := v.index
	assert.Equal(t, []string{
		fmt.Sprintf("ended rw %d", w1.GetToken()),
		fmt.Sprintf("granted rw %d slot 0", i),
		fmt.Sprintf("granted rw %d slot 0", i+1),
	}, kinds(ev))
	assert.Equal(t, []uint64{w2.GetClaim(), r4.GetClaim()}, queueOf(v.s, "rw"))
	assert.Equal(t, i+1, tokenFloorOf(v.s), "the second grant's token is the floor the next entry starts above")

	// The next grant, of any name, is above both.
	m, _ := v.acquire(s1, "m")
	assert.Equal(t, i+2, m.GetToken())
	assert.Equal(t, i+1, v.index)

	// The queued writer withdraws: the reader behind it is admissible
	// now, and is granted in the withdrawing entry (above the last token:
	// the floor stays ahead of the index while each entry grants).
	_, ev = v.apply(cmdCancel(s4, v.next(s4), "rw", w2.GetClaim()))
	assert.Equal(t, []string{
		fmt.Sprintf("withdrawn rw %d", w2.GetClaim()),
		fmt.Sprintf("granted rw %d slot 0", m.GetToken()+1),
	}, kinds(ev))
	assert.Len(t, v.s.Lock("rw").Holders, 3)
}

func TestState_SessionEndGrantsNoClaimOfItsOwn(t *testing.T) {
	// s2 queues a writer and, behind it, a TTL reader. Its session's end
	// takes both out before handing anything on: withdrawing the writer
	// first would have admitted s2's own reader beside s1's, a lease
	// nobody holds once the session is gone.
	v := newV5(t, 2)
	v.acquire(s1, "rw", read)
	w, _ := v.acquire(s2, "rw", write)
	r, _ := v.acquire(s2, "rw", read, withTTL(time.Minute))
	_, ev := v.apply(cmdExpireSession(s2))
	assert.Equal(t, []string{fmt.Sprintf("withdrawn rw %d", w.GetClaim()), fmt.Sprintf("withdrawn rw %d", r.GetClaim())}, kinds(ev))
	assert.Len(t, v.s.Lock("rw").Holders, 1)
	assert.Empty(t, v.s.orphans)
}

func TestState_ReadWriteSessionEnds(t *testing.T) {
	// The writer's session ends while readers wait: every reader is
	// granted in the expiring entry, in queue order.
	v := newV5(t, 3)
	v.acquire(s1, "rw", write)
	q2, _ := v.acquire(s2, "rw", read)
	q3, _ := v.acquire(s3, "rw", read)
	_, ev := v.apply(cmdExpireSession(s1))
	i := v.index
	assert.Equal(t, []string{
		fmt.Sprintf("ended rw %d", q2.GetClaim()-1),
		fmt.Sprintf("granted rw %d slot 0", i),
		fmt.Sprintf("granted rw %d slot 0", i+1),
	}, kinds(ev))
	hs := v.s.Lock("rw").Holders
	require.Len(t, hs, 2)
	assert.Equal(t, []uint64{q2.GetClaim(), q3.GetClaim()}, []uint64{hs[0].Claim, hs[1].Claim})
}

func TestState_Election(t *testing.T) {
	v := newV5(t, 3)
	t1, ev := v.acquire(s1, "e", withValue("alpha"))
	require.Equal(t, fsmpb.Code_CODE_GRANTED, t1.GetCode())
	require.Len(t, ev, 1)
	assert.Equal(t, "alpha", ev[0].Value)
	assert.Equal(t, fsmpb.LockType_LOCK_TYPE_ELECTION, ev[0].Type)
	c2, _ := v.acquire(s2, "e", withValue("beta"))
	assert.Equal(t, fsmpb.Code_CODE_QUEUED, c2.GetCode(), "one leader at a time")
	assert.Equal(t, "beta", v.s.Queue("e", 0)[0].Value)

	ok, ev := v.proclaim(s1, "e", t1.GetToken(), "alpha-2")
	assertResult(t, resToken(t1.GetToken()), ok)
	assert.Equal(t, []string{fmt.Sprintf("proclaimed e %d %q", t1.GetToken(), "alpha-2")}, kinds(ev))
	assert.Equal(t, "alpha-2", v.s.Lock("e").Value)

	// Only the term's holder proclaims; a stale token, another session or
	// a name of another type does not.
	other, _ := v.proclaim(s2, "e", t1.GetToken(), "x")
	assertResult(t, res(fsmpb.Code_CODE_NOT_HELD), other)
	stale, _ := v.proclaim(s1, "e", t1.GetToken()+1000, "x")
	assertResult(t, res(fsmpb.Code_CODE_NOT_HELD), stale)
	v.acquire(s3, "m")
	mutex, _ := v.proclaim(s3, "m", v.s.Lock("m").Token, "x")
	assertResult(t, &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH}, mutex)
	assert.Equal(t, "alpha-2", v.s.Lock("e").Value)

	// Resign with a candidate waiting: the next term in the same entry,
	// with the candidate's value, no empty seat between.
	_, ev = v.release(s1, "e", t1.GetToken())
	assert.Equal(t, []string{fmt.Sprintf("ended e %d", t1.GetToken()), fmt.Sprintf("granted e %d slot 0", v.index)}, kinds(ev))
	assert.Equal(t, "beta", v.s.Lock("e").Value)
	assert.Equal(t, uint64(s2), v.s.Lock("e").Session)
}

func TestState_ClientSessionReattachV5(t *testing.T) {
	// A client session keeps one claim per name: an acquire of the same
	// mode re-attaches, another mode is MISMATCH with the claim's mode (no
	// upgrade through a re-attach).
	v := newV5(t, 1)
	const client = 9
	v.apply(cmdOpenClientAs(client))
	for5 := func(opts ...acqOpt) acqOpt {
		return func(a *fsmpb.Acquire) {
			forClient(client, k(client), k(0x55))(a)
			for _, o := range opts {
				o(a)
			}
		}
	}
	r, _ := v.acquire(s1, "rw", for5(read))
	require.Equal(t, fsmpb.Code_CODE_GRANTED, r.GetCode())
	again, _ := v.acquire(s1, "rw", for5(read))
	assert.Equal(t, fsmpb.Code_CODE_GRANTED, again.GetCode(), "the same mode re-attaches")
	assert.Equal(t, r.GetToken(), again.GetToken())
	up, ev := v.acquire(s1, "rw", for5(write))
	assertResult(t, &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: fsmpb.LockType_LOCK_TYPE_READ_WRITE, Mode: fsmpb.Mode_MODE_READ}, up)
	assert.Empty(t, ev)
}

func TestState_V5Invalid(t *testing.T) {
	v := newV5(t, 1)
	for _, opt := range []acqOpt{
		withSemaphore(0),
		withSemaphore(MaxPermits + 1),
		func(a *fsmpb.Acquire) { a.Mode = fsmpb.Mode_MODE_READ },                                      // a mode on a mutex
		func(a *fsmpb.Acquire) { a.Type = fsmpb.LockType_LOCK_TYPE_READ_WRITE },                       // a read-write lock without a mode
		func(a *fsmpb.Acquire) { a.Value = "v" },                                                      // a value on a mutex
		func(a *fsmpb.Acquire) { a.Type = 9 },                                                         // an unknown type
		func(a *fsmpb.Acquire) { a.Type, a.Limit = fsmpb.LockType_LOCK_TYPE_ELECTION, 1 },             // a limit on an election
		func(a *fsmpb.Acquire) { a.Type, a.Mode = fsmpb.LockType_LOCK_TYPE_READ_WRITE, 3 },            // an unknown mode
		func(a *fsmpb.Acquire) { withValue(string(make([]byte, MaxOwnerLen+1)))(a) },                  // a value too long
		func(a *fsmpb.Acquire) { a.Type, a.Limit, a.Mode = fsmpb.LockType_LOCK_TYPE_SEMAPHORE, 2, 1 }, // a mode on a semaphore
	} {
		cmd := cmdAcquire(s1, v.next(s1), "x", opt)
		assert.Error(t, Validate(cmd), "%v", cmd)
		got, ev := v.apply(cmd)
		assertResult(t, res(fsmpb.Code_CODE_INVALID), got)
		assert.Empty(t, ev)
	}
	bad := &fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{Req: rq(s1, 99), Name: "x", Token: 1, Value: "\xff"}}}
	assert.ErrorIs(t, Validate(bad), ErrInvalid, "a value that is not UTF-8")
	assert.ErrorIs(t, Validate(cmdAcquire(s1, 1, "x", withValue("\xff"))), ErrInvalid)
	assert.NoError(t, Validate(cmdAcquire(s1, 1, "x", withSemaphore(MaxPermits))))
}

func TestState_WaitersPerNameCountsExtraReaders(t *testing.T) {
	v := newV5(t, 3)
	lim := Limits{WaitersPerName: 1}
	v.acquire(s1, "rw", read)
	assert.NoError(t, v.s.Admit(cmdAcquire(s2, v.next(s2), "rw", read), lim), "one reader: nothing waits")
	v.acquire(s2, "rw", read)
	assert.ErrorIs(t, v.s.Admit(cmdAcquire(s3, v.next(s3), "rw", read), lim), ErrLimit, "a second reader counts")
	v.acquire(s1, "sem", withSemaphore(3))
	v.acquire(s2, "sem", withSemaphore(3))
	assert.NoError(t, v.s.Admit(cmdAcquire(s3, v.next(s3), "sem", withSemaphore(3)), lim), "a semaphore's holders are bounded by its limit")
}

func TestRestore_V5(t *testing.T) {
	v := newV5(t, 3)
	v.acquire(s1, "s", withSemaphore(2))
	v.acquire(s2, "s", withSemaphore(2), withTTL(time.Second))
	v.acquire(s3, "s", withSemaphore(2))
	v.acquire(s1, "rw", read)
	v.acquire(s2, "rw", read)
	v.acquire(s3, "rw", write)
	v.acquire(s1, "e", withValue("a"))
	v.acquire(s2, "e", withValue("b"))
	data := mustSnapshot(t, v.s)
	r, err := Restore(data)
	require.NoError(t, err)
	assert.Equal(t, data, mustSnapshot(t, r))
	requireInvariants(t, r)

	// Each way a snapshot can break protocol 5's rules is corrupt, for its
	// own reason.
	edits := []struct {
		name, why string
		edit      func(p *fsmpb.Snapshot)
	}{
		{"two holders of an election", "does not fit a LOCK_TYPE_ELECTION", func(p *fsmpb.Snapshot) {
			l := lockNamed(p, "e")
			l.Holders = append(l.Holders, leaseFrom(l.Queue[0], 100000))
			l.Queue = nil
		}},
		{"a third permit of limit 2", "holder 100000 does not fit", func(p *fsmpb.Snapshot) {
			l := lockNamed(p, "s")
			h := leaseFrom(l.Queue[0], 100000)
			h.Slot = 2
			l.Holders, l.Queue = append(l.Holders, h), nil
		}},
		{"two permits on one slot", "does not fit a LOCK_TYPE_SEMAPHORE", func(p *fsmpb.Snapshot) { lockNamed(p, "s").Holders[1].Slot = 0 }},
		{"a slot above the limit", "does not fit a LOCK_TYPE_SEMAPHORE", func(p *fsmpb.Snapshot) { lockNamed(p, "s").Holders[1].Slot = 2 }},
		{"a slot on a reader", "slot 1 on a LOCK_TYPE_READ_WRITE", func(p *fsmpb.Snapshot) { lockNamed(p, "rw").Holders[1].Slot = 1 }},
		{"a writer beside readers", "does not fit a LOCK_TYPE_READ_WRITE", func(p *fsmpb.Snapshot) {
			lockNamed(p, "rw").Holders[1].Claim.Mode = fsmpb.Mode_MODE_WRITE
		}},
		{"tokens out of order", "not increasing", func(p *fsmpb.Snapshot) {
			l := lockNamed(p, "rw")
			l.Holders[0], l.Holders[1] = l.Holders[1], l.Holders[0]
		}},
		{"an admissible queue head", "is admissible", func(p *fsmpb.Snapshot) { lockNamed(p, "s").Holders = lockNamed(p, "s").Holders[:1] }},
		{"a mode on a semaphore", "mode MODE_READ on a LOCK_TYPE_SEMAPHORE", func(p *fsmpb.Snapshot) {
			lockNamed(p, "s").Holders[0].Claim.Mode = fsmpb.Mode_MODE_READ
		}},
		{"a value on a semaphore", "a value on a LOCK_TYPE_SEMAPHORE", func(p *fsmpb.Snapshot) { lockNamed(p, "s").Holders[0].Claim.Value = "v" }},
		{"a value too long", "a value of", func(p *fsmpb.Snapshot) {
			lockNamed(p, "e").Holders[0].Claim.Value = string(make([]byte, MaxOwnerLen+1))
		}},
		{"a limit on an election", "LOCK_TYPE_ELECTION of limit 1", func(p *fsmpb.Snapshot) { lockNamed(p, "e").Limit = 1 }},
		{"a semaphore of limit 0", "LOCK_TYPE_SEMAPHORE of limit 0", func(p *fsmpb.Snapshot) { lockNamed(p, "s").Limit = 0 }},
		{"an unknown type", "unknown type 7", func(p *fsmpb.Snapshot) { lockNamed(p, "e").Type = 7 }},
		{"a single holder at level 5", "a single holder at level 5", func(p *fsmpb.Snapshot) {
			l := lockNamed(p, "e")
			l.Holder, l.Holders = l.Holders[0], nil
		}},
		{"level-5 fields at level 4", "fields of level 5 at level 4", func(p *fsmpb.Snapshot) { p.Protocol = 4; p.TokenFloor = 0 }},
		{"no holders", "no holder", func(p *fsmpb.Snapshot) { lockNamed(p, "e").Holders = nil }},
	}
	for _, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			p := decodeSnapshot(t, v.s)
			tc.edit(p)
			b, err := marshalOpts.Marshal(p)
			require.NoError(t, err)
			_, err = Restore(b)
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.ErrorContains(t, err, tc.why)
		})
	}
}

func lockNamed(p *fsmpb.Snapshot, name string) *fsmpb.Lock {
	for _, l := range p.GetLocks() {
		if l.GetName() == name {
			return l
		}
	}
	panic("no lock " + name)
}

// leaseFrom is a held lease made of a queued claim.
func leaseFrom(c *fsmpb.Claim, token uint64) *fsmpb.Lease {
	return &fsmpb.Lease{Claim: c, Token: token, Generation: token}
}

// TestLockInfo_Leases: Leases, Lease and LeaseOfClaim see every holder of
// a semaphore, and a mutex's one lease from the top-level fields.
func TestLockInfo_Leases(t *testing.T) {
	v := newV5(t, 3)
	r1, _ := v.acquire(1, "s", withSemaphore(2))
	r2, _ := v.acquire(2, "s", withSemaphore(2))
	require.Equal(t, fsmpb.Code_CODE_GRANTED, r2.GetCode())
	li := v.s.Lock("s")
	require.Len(t, li.Leases(), 2)
	h, ok := li.Lease(r2.GetToken())
	require.True(t, ok, "the second permit by token")
	assert.Equal(t, uint64(2), h.Session)
	assert.Equal(t, int(r2.GetSlot()), h.Slot)
	h, ok = li.LeaseOfClaim(r1.GetClaim())
	require.True(t, ok, "the first permit by claim")
	assert.Equal(t, r1.GetToken(), h.Token)
	_, ok = li.Lease(r2.GetToken() + 100)
	assert.False(t, ok)

	m, _ := v.acquire(3, "m")
	mi := v.s.Lock("m")
	require.Nil(t, mi.Holders, "a mutex lists no Holders")
	h, ok = mi.Lease(m.GetToken())
	require.True(t, ok, "a mutex's lease from the top-level fields")
	assert.Equal(t, uint64(3), h.Session)
	assert.Equal(t, m.GetClaim(), h.Claim)
	assert.Nil(t, v.s.Lock("free").Leases())
}
