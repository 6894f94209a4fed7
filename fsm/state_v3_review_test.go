package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Review of protocol 3: one test per finding (DESIGN.md, "Decided after
// review"), each failing before its fix.

func applyAt(t *testing.T, s *State, index uint64, cmd *fsmpb.Command) (*fsmpb.Result, []Event) {
	t.Helper()
	r, ev, err := s.Apply(index, cmd)
	require.NoError(t, err)
	require.NoError(t, checkInvariants(s))
	return r, ev
}

// A client session named as the request's own session (no for_session)
// would skip its secret; its ID is public (Sessions, Lock(name).Session).
func TestReviewP3_ClientSessionIsNeverAStream(t *testing.T) {
	s := mustApply(t, opens3(1, cmdOpenClient(c1, k(1), "web"), // 3
		cmdAcquire(s1, 1, "t", withTTL(time.Minute), forClient(c1, k(1), k(2))))...) // 4
	require.Equal(t, c1, s.Lock("t").Session)
	before := mustSnapshot(t, s)

	for i, cmd := range []*fsmpb.Command{
		cmdAcquire(c1, 1, "t", withTTL(time.Minute)), // would re-attach and answer the key
		cmdAcquire(c1, 2, "u"),
		cmdRelease(c1, 3, "t", 4), // "from the holder's session"
		cmdRefresh(c1, 4, "t", 4),
		cmdCancel(c1, 5, "t", 4),
		cmdRevoke(c1, 6, "t", 4),
		cmdAdopt(c1, 7, "t", 4),
		cmdClose(c1, 8),
	} {
		r, ev := applyAt(t, s, uint64(5+i), cmd)
		assert.Equal(t, fsmpb.Code_CODE_UNKNOWN_SESSION, r.GetCode(), "%v", cmd)
		assert.Empty(t, r.GetKey())
		assert.Empty(t, ev)
	}
	assert.Equal(t, before, mustSnapshot(t, s), "nothing changed, not even a request cache")
	assert.True(t, s.HasSession(c1))
}

// Admit refused a re-attach when the name's queue was full, though a
// re-attach adds no claim.
func TestReviewP3_AdmitAdmitsReattachOnFullQueue(t *testing.T) {
	lim := Limits{WaitersPerName: 1}
	s := mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), cmdOpenClient(c2, k(4), ""), // 4, 5
		cmdAcquire(s1, 1, "a"),                                // 6
		cmdAcquire(s2, 1, "a", forClient(c1, k(1), k(2))))...) // 7 queued
	again := cmdAcquire(s2, 2, "a", forClient(c1, k(1), k(3)))
	require.NoError(t, s.Admit(again, lim), "a re-attach adds nothing")
	assert.ErrorIs(t, s.Admit(cmdAcquire(s2, 2, "a", forClient(c2, k(4), k(3))), lim), ErrLimit,
		"another client session's claim would grow the queue")
	r, _ := applyAt(t, s, 8, again)
	assert.Equal(t, fsmpb.Code_CODE_QUEUED, r.GetCode())
	assert.Equal(t, []uint64{8}, queueOf(s, "a"), "still one claim, under the re-attach's ID")

	// Held by the client, a queue behind it full: admitted too.
	s = mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s1, 1, "b", forClient(c1, k(1), k(2))), // 5 granted
		cmdAcquire(s2, 1, "b"))...)                        // 6 queued
	assert.NoError(t, s.Admit(cmdAcquire(s2, 2, "b", forClient(c1, k(1), k(3))), lim))
}

// A Cancel{claim} from the stream a client left (its waiter gave up after
// the client re-attached elsewhere) withdrew the re-attached claim or
// ended the lease a re-attach had just answered.
func TestReviewP3_CancelFromOldStreamAfterReattach(t *testing.T) {
	// Queued: re-attached at s2 (another node), then s1's give-up.
	s := mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s2, 1, "a"),                                // 5
		cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))))...) // 6 queued, stream s1
	r, ev := applyAt(t, s, 7, cmdAcquire(s2, 2, "a", forClient(c1, k(1), k(3))))
	assert.True(t, proto.Equal(resKeyed(fsmpb.Code_CODE_QUEUED, 0, 7, k(2)), r), "%v", r)
	assert.Equal(t, []Event{{Kind: EventMoved, Name: "a", Session: c1, Seq: 1, Claim: 6, Stream: s1}}, ev,
		"the old stream hears that its waiter lost the claim")
	r, ev = applyAt(t, s, 8, cmdCancel(s1, 2, "a", 6))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode())
	assert.Empty(t, ev)
	assert.Equal(t, []uint64{7}, queueOf(s, "a"))
	r, _ = applyAt(t, s, 9, cmdCancel(s2, 3, "a", 7))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode(), "the new waiter's give-up still withdraws it")
	assert.Empty(t, queueOf(s, "a"))

	// Held: re-attach answers GRANTED to s2, then s1's give-up.
	s = mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))))...) // 5 granted, stream s1
	r, ev = applyAt(t, s, 6, cmdAcquire(s2, 1, "a", forClient(c1, k(1), k(3))))
	assert.True(t, proto.Equal(resKeyed(fsmpb.Code_CODE_GRANTED, 5, 6, k(2)), r), "%v", r)
	assert.Equal(t, []Event{{Kind: EventMoved, Name: "a", Session: c1, Seq: 1, Claim: 5, Token: 5, Stream: s1}}, ev)
	r, _ = applyAt(t, s, 7, cmdCancel(s1, 2, "a", 5))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode())
	assert.True(t, s.Lock("a").Held)

	// The same stream twice (the client asked the same node again): the
	// first waiter's Cancel names the old ID too.
	s = mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s2, 1, "a"),                                // 5
		cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))),     // 6 queued
		cmdAcquire(s1, 2, "a", forClient(c1, k(1), k(3))))...) // 7 re-attach, same stream
	r, _ = applyAt(t, s, 8, cmdCancel(s1, 3, "a", 6))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode())
	assert.Equal(t, []uint64{7}, queueOf(s, "a"))
}

// The previous holder's late Cancel{claim} (its cleanup of a grant its
// waiter gave up on) ended the adopter's lease: Adopt kept the claim ID.
// From level 3 Adopt gives the claim the Adopt's index.
func TestReviewP3_CancelByPreviousHolderAfterAdopt(t *testing.T) {
	s := mustApply(t, opens3(3,
		cmdAcquire(s1, 1, "t", withTTL(time.Minute), withKey(k(2))), // 5
		cmdAdoptKey(s2, 1, "t", 5, k(8)),                            // 6
		cmdAcquire(3, 1, "t"))...)                                   // 7 queued
	require.Equal(t, uint64(s2), s.Lock("t").Session)
	r, _ := applyAt(t, s, 8, cmdReleaseKey(s1, 2, "t", 0, k(2)))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode(), "the old key is refused")
	r, _ = applyAt(t, s, 9, cmdCancel(s1, 3, "t", 5))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode(), "the old claim ID is refused")
	assert.Equal(t, uint64(s2), s.Lock("t").Session, "the adopter keeps the name")
	r, _ = applyAt(t, s, 10, cmdCancel(s2, 2, "t", 6))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode(), "the adopter's claim is the Adopt's index")
	assert.Equal(t, uint64(3), s.Lock("t").Session)
}

// An expired client session's ID opened again with another secret owned
// its TTL lease and learned the key by re-attaching. From level 3 an ID
// that still owns a lease is not opened again.
func TestReviewP3_ReopenOfAnIDThatOwnsALease(t *testing.T) {
	s := mustApply(t, opens3(1, cmdOpenClient(c1, k(1), ""), // 3
		cmdAcquire(s1, 1, "t", withTTL(time.Minute), forClient(c1, k(1), k(2))), // 4
		cmdExpireSession(c1))...) // 5
	for i, cmd := range []*fsmpb.Command{
		cmdOpenClient(c1, k(9), ""), // another secret
		cmdOpenClient(c1, k(1), ""), // its own secret: the session is over all the same
		cmdOpen(c1, sessTTL, "n1"),  // a node's session
	} {
		r, ev := applyAt(t, s, uint64(6+i), cmd)
		assert.Equal(t, fsmpb.Code_CODE_HELD, r.GetCode(), "%v", cmd)
		assert.Empty(t, ev)
		assert.False(t, s.HasSession(c1))
	}
	r, _ := applyAt(t, s, 9, cmdAcquire(s1, 2, "t", forClient(c1, k(9), k(3))))
	assert.Equal(t, fsmpb.Code_CODE_UNKNOWN_SESSION, r.GetCode())

	// Once the lease is gone the ID may be used again.
	r, _ = applyAt(t, s, 10, cmdReleaseKey(s1, 3, "t", 0, k(2)))
	require.Equal(t, fsmpb.Code_CODE_OK, r.GetCode())
	r, _ = applyAt(t, s, 11, cmdOpenClient(c1, k(9), ""))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode())

	// At level 2 a node's session ID opened again owns what outlived it,
	// as before.
	s = mustApply(t, opens2(1, cmdAcquire(s1, 1, "t", withTTL(time.Minute)), cmdExpireSession(s1))...)
	r, _ = applyAt(t, s, 100, cmdOpen(s1, sessTTL, "n1"))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode())
	applyAt(t, s, 101, cmdClose(s1, 1))
	assert.False(t, s.Lock("t").Held, "closing the session opened again ended the lease it owned")
}

// A client's TTL lease became anyone's by token once its session expired:
// from level 3 a keyed lease whose session is gone needs its key.
func TestReviewP3_KeyedLeaseOfAGoneSessionNeedsItsKey(t *testing.T) {
	s := mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s1, 1, "t", withTTL(time.Minute), forClient(c1, k(1), k(2))), // 5
		cmdAcquire(s1, 2, "u", withTTL(time.Minute)),                            // 6, a node's lease without a key
		cmdExpireSession(c1), cmdExpireSession(s1))...) // 7, 8
	r, _ := applyAt(t, s, 9, cmdRefresh(s2, 1, "t", 5))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode())
	r, _ = applyAt(t, s, 10, cmdRelease(s2, 2, "t", 5))
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, r.GetCode())
	assert.True(t, s.Lock("t").Held)
	r, _ = applyAt(t, s, 11, cmdReleaseKey(s2, 3, "t", 5, k(2)))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode())
	r, _ = applyAt(t, s, 12, cmdRelease(s2, 4, "u", 6))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode(), "a lease without a key stays anyone's by token once its session is gone")
}

// p3History generates histories aimed at protocol 3: client sessions used
// through several streams and as their own stream, re-attaches, keys taken
// from the answers, Adopt, Cancel and Revoke of client claims, client
// sessions expiring and opened again (with their secret or another), and
// streams that end while their claims live.
type p3History struct {
	*history
	keys map[string][][]byte // keys answered per name
}

var (
	p3Streams = []uint64{1, 2, 3}
	p3Clients = []uint64{5, 6, 7}
	p3Names   = []string{"a", "b", "c"}
)

func (h *p3History) name() string { return p3Names[h.r.IntN(len(p3Names))] }

func (h *p3History) stream() uint64 {
	if h.r.IntN(8) == 0 { // a client session as its own stream
		return p3Clients[h.r.IntN(len(p3Clients))]
	}
	return p3Streams[h.r.IntN(len(p3Streams))]
}

func (h *p3History) client() uint64 { return p3Clients[h.r.IntN(len(p3Clients))] }

// leaseKey is a key answered for name most of the time, else one of a few.
func (h *p3History) leaseKey(name string) []byte {
	if ks := h.keys[name]; len(ks) > 0 && h.r.IntN(4) > 0 {
		return ks[h.r.IntN(len(ks))]
	}
	return k(byte(0x40 + h.r.IntN(3)))
}

func (h *p3History) next() *fsmpb.Command {
	h.index++
	cmd := h.gen()
	cmd.StampUnixNano = int64(h.index) * int64(time.Millisecond)
	if rq := reqOf(cmd); rq != nil {
		if _, isOpen := cmd.GetOp().(*fsmpb.Command_OpenSession); !isOpen {
			h.reqs = append(h.reqs, cmd)
		} else {
			// A session opened again forgets its cache: a retry of an
			// earlier request would run again, a known limit of protocol 1
			// that this generator does not aim at.
			h.reqs = slices.DeleteFunc(h.reqs, func(c *fsmpb.Command) bool { return reqOf(c).GetSession() == rq.GetSession() })
		}
	}
	return cmd
}

func (h *p3History) gen() *fsmpb.Command {
	r := h.r
	if h.index <= uint64(len(p3Streams)) {
		return cmdOpen(p3Streams[h.index-1], sessTTL, "n")
	}
	if h.index == h.raise3 {
		return cmdSetProtocol(3)
	}
	switch n := r.IntN(100); {
	case n < 8: // open a client session, its secret or (rarely) another
		id := h.client()
		return cmdOpenClient(id, h.secret(id), "")
	case n < 10: // open a stream again (after it expired)
		return cmdOpen(p3Streams[r.IntN(len(p3Streams))], sessTTL, "n")
	case n < 14: // close a client session through a stream
		id := h.client()
		st, seq := h.streamSeq()
		return cmdCloseClient(st, seq, id, h.secret(id))
	case n < 19: // expire a client session or a stream
		if r.IntN(3) == 0 {
			return cmdExpireSession(p3Streams[r.IntN(len(p3Streams))])
		}
		return cmdExpireSession(h.client())
	case n < 45: // acquire for a client (often a re-attach)
		id := h.client()
		a := &fsmpb.Acquire{Req: h.req(h.stream()), Name: h.name(), ForSession: id, Secret: h.secret(id), Key: k(byte(0x50 + r.IntN(200)))}
		if r.IntN(2) == 0 {
			a.TtlNs = int64(time.Second)
		}
		a.Try = r.IntN(6) == 0
		if r.IntN(6) == 0 { // the client session as its own stream, no for_session
			a.Req, a.ForSession, a.Secret = h.req(id), 0, nil
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
	case n < 52: // a node session's acquire, keyed or not
		a := &fsmpb.Acquire{Req: h.req(p3Streams[r.IntN(len(p3Streams))]), Name: h.name(), TtlNs: int64(time.Second)}
		if r.IntN(2) == 0 {
			a.Key = k(byte(0x50 + r.IntN(200)))
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
	case n < 62: // release by key (and sometimes token)
		name := h.name()
		c := &fsmpb.Release{Req: h.req(h.stream()), Name: name, Key: h.leaseKey(name)}
		if r.IntN(3) == 0 {
			c.Token = h.token(name)
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: c}}
	case n < 68: // refresh by key
		name := h.name()
		st, seq := h.streamSeq()
		return cmdRefreshKey(st, seq, name, 0, h.leaseKey(name))
	case n < 72: // release by token
		name := h.name()
		st, seq := h.streamSeq()
		return cmdRelease(st, seq, name, h.token(name))
	case n < 79: // cancel a claim (held or queued)
		name := h.name()
		claim := h.pick(h.claims[name])
		if q := queueOf(h.s, name); len(q) > 0 && r.IntN(2) == 0 {
			claim = q[r.IntN(len(q))]
		}
		st, seq := h.streamSeq()
		return cmdCancel(st, seq, name, claim)
	case n < 85: // adopt, with a new key or none
		name := h.name()
		c := &fsmpb.Adopt{Req: h.req(h.stream()), Name: name, Token: h.token(name)}
		if r.IntN(3) > 0 {
			c.Key = k(byte(0x50 + r.IntN(200)))
		}
		return &fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: c}}
	case n < 88: // revoke
		name := h.name()
		st, seq := h.streamSeq()
		return cmdRevoke(st, seq, name, h.token(name))
	case n < 90: // end a revoked lease
		if rl := h.s.Revoked(); len(rl) > 0 {
			return cmdEndRevoked(rl[0].Name, rl[0].Token)
		}
		return cmdExpireSession(h.client())
	case n < 93: // expire a TTL lease
		name := h.name()
		li := h.s.Lock(name)
		return cmdExpireLease(name, li.Token, li.Generation)
	default: // retry an earlier request
		if len(h.reqs) == 0 {
			return cmdExpireSession(h.client())
		}
		i := len(h.reqs) - 1 - min(len(h.reqs)-1, int(r.ExpFloat64()*6))
		return proto.Clone(h.reqs[i]).(*fsmpb.Command)
	}
}

// streamSeq is a stream and its next seq.
func (h *p3History) streamSeq() (uint64, uint64) {
	id := h.stream()
	return id, h.nextSeqOf(id)
}

// nextSeqOf is the next request seq of session id (acked_below left as is).
func (h *p3History) nextSeqOf(id uint64) uint64 {
	h.nextSeq[id]++
	return h.nextSeq[id]
}

func (h *p3History) observe(res *fsmpb.Result, events []Event) {
	h.history.observe(events)
	for _, ev := range events {
		if ev.Kind == EventQueued {
			h.claims[ev.Name] = append(h.claims[ev.Name], ev.Claim)
		}
	}
	if key := res.GetKey(); len(key) > 0 {
		for _, name := range p3Names {
			if l := h.s.locks[name]; l != nil {
				for _, cl := range claimsOf(l) {
					if cl.id == res.GetClaim() {
						h.keys[name] = append(h.keys[name], key)
					}
				}
			}
		}
	}
}

// checkP3 checks what checkInvariants does not: an answered key is the
// claim's key, and no two live claims share a routing key ((stream, seq),
// or (session, seq) without a stream).
func checkP3(s *State, cmd *fsmpb.Command, res *fsmpb.Result, fresh bool) error {
	type route struct{ session, seq uint64 }
	seen := map[route]uint64{}
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		l := s.locks[name]
		for _, cl := range claimsOf(l) {
			rt := route{cl.session, cl.seq}
			if cl.stream != 0 {
				rt.session = cl.stream
			}
			if other, dup := seen[rt]; dup && s.sessions[rt.session] != nil {
				return fmt.Errorf("claims %d and %d share the route %v", other, cl.id, rt)
			}
			seen[rt] = cl.id
			if a := cmd.GetAcquire(); a != nil && fresh && res.GetClaim() == cl.id && (res.GetCode() == fsmpb.Code_CODE_GRANTED || res.GetCode() == fsmpb.Code_CODE_QUEUED) {
				if !bytes.Equal(res.GetKey(), cl.key) {
					return fmt.Errorf("acquire answered key %x, claim %d has %x", res.GetKey(), cl.id, cl.key)
				}
			}
		}
	}
	return nil
}

var p3Seeds = flag.Int("review.p3seeds", 200, "seeds of TestReviewP3_Property")

// TestReviewP3_Property: TestState_Property's comparison (a replica that
// restores its snapshot at random points against one that never does) on
// p3History, with checkP3 after every entry.
func TestReviewP3_Property(t *testing.T) {
	for seed := range uint64(*p3Seeds) {
		t.Run(fmt.Sprintf("seed=%d", seed+1), func(t *testing.T) {
			t.Parallel()
			runP3Property(t, seed+1, *propSteps)
		})
	}
}

func runP3Property(t *testing.T, seed uint64, steps int) {
	a, b := New(), New()
	base := newHistory(seed, a, steps)
	base.raise3 = uint64(len(p3Streams)) + 1 + base.r.Uint64N(3)
	h := &p3History{history: base, keys: map[string][][]byte{}}
	model := newEventModel()
	var log strings.Builder // what happened, shown if the test fails
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (rerun: -run 'TestReviewP3_Property/seed=%d$'):\n%s", seed, seed, log.String())
		}
	}()
	for step := 1; step <= steps; step++ {
		if h.r.IntN(25) == 0 {
			snap := mustSnapshot(t, b)
			r, err := Restore(snap)
			require.NoError(t, err, "seed %d step %d: restore", seed, step)
			require.Equal(t, snap, mustSnapshot(t, r))
			b = r
			fmt.Fprintf(&log, "-- B restored\n")
		}
		if h.index+1 == h.raise3-1 && a.Protocol() < 2 {
			h.index++
			_, _, err := a.Apply(h.index, cmdSetProtocol(2))
			require.NoError(t, err)
			_, _, err = b.Apply(h.index, cmdSetProtocol(2))
			require.NoError(t, err)
			continue
		}
		cmd := h.next()
		idx := h.index
		fresh := true // not answered from the cache
		if rq := reqOf(cmd); rq != nil && a.sessions[rq.GetSession()] != nil {
			fresh = !a.sessions[rq.GetSession()].repeats(rq)
		}
		resA, evA, errA := a.Apply(idx, cmd)
		resB, evB, errB := b.Apply(idx, cmd)
		fmt.Fprintf(&log, "%d: %v => {%v} %+v\n", idx, cmd, resA, evA)
		require.Equal(t, errA, errB, "seed %d index %d", seed, idx)
		require.NoError(t, errA, "seed %d index %d %v", seed, idx, cmd)
		require.True(t, proto.Equal(resA, resB), "seed %d index %d: results differ: A %v, B %v (%v)", seed, idx, resA, resB, cmd)
		require.Equal(t, evA, evB, "seed %d index %d: events differ (%v)", seed, idx, cmd)
		require.NoError(t, model.apply(idx, evA), "seed %d index %d (%v)", seed, idx, cmd)
		require.NoError(t, checkInvariants(a), "seed %d index %d (%v)", seed, idx, cmd)
		require.NoError(t, checkP3(a, cmd, resA, fresh), "seed %d index %d (%v) => %v", seed, idx, cmd, resA)
		require.Equal(t, mustSnapshot(t, a), mustSnapshot(t, b), "seed %d index %d: snapshots differ (%v)", seed, idx, cmd)
		h.observe(resA, evA)
	}
}

// A node's session closing (a replica stopping gracefully) ended the keyed
// TTL leases it had handed to callers outside it; from level 3 they
// outlive its close as they outlive its expiry.
func TestReviewP3_CloseOfANodeSessionLeavesKeyedTTLLeases(t *testing.T) {
	s := mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), // 4
		cmdAcquire(s1, 1, "keyed", withTTL(time.Minute), withKey(k(2))),              // 5
		cmdAcquire(s1, 2, "plain", withTTL(time.Minute)),                             // 6
		cmdAcquire(s1, 3, "sess", withKey(k(3))),                                     // 7: keyed, but a session lease
		cmdAcquire(s1, 4, "client", withTTL(time.Minute), forClient(c1, k(1), k(4))), // 8: the client's
		cmdAcquire(s2, 1, "keyed"))...)                                               // 9 queued
	_, ev := applyAt(t, s, 10, cmdClose(s1, 5))
	assert.True(t, s.Lock("keyed").Held, "the keyed TTL lease outlives the close")
	assert.Equal(t, []uint64{9}, queueOf(s, "keyed"))
	assert.False(t, s.Lock("plain").Held)
	assert.False(t, s.Lock("sess").Held)
	assert.True(t, s.Lock("client").Held, "the client session's lease is not the node's")
	for _, e := range ev {
		assert.NotEqual(t, "keyed", e.Name, "%+v", e)
	}
	r, _ := applyAt(t, s, 11, cmdReleaseKey(s2, 2, "keyed", 0, k(2)))
	assert.Equal(t, fsmpb.Code_CODE_OK, r.GetCode(), "released by its key after the close")
	assert.Equal(t, uint64(s2), s.Lock("keyed").Session)

	_, _ = applyAt(t, s, 12, cmdCloseClient(s2, 3, c1, k(1)))
	assert.False(t, s.Lock("client").Held, "a client session's close ends all of its leases")
}
