package locktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// The election group (lock/DESIGN.md, "Elector" and "Checking them"), run
// for a Locker that implements lock.Elector.
var electionTests = []subtest{
	{"OneLeader", testElectionOneLeader},
	{"Leader", testElectionLeader},
	{"Observe", testElectionObserve},
	{"ObserveOrder", testElectionObserveOrder},
	{"FIFO", testElectionFIFO},
	{"Handover", testElectionHandover},
	{"InvalidInput", testElectionInvalidInput},
	{"Lead", testLead},
}

// probeElector is the group's first call: Leader of an election nobody
// ran, which answers ErrNoLeader.
func probeElector(e *env) (bool, error) {
	el, ok := e.a.(lock.Elector)
	if !ok {
		return false, nil
	}
	_, err := el.Leader(e.ctx(), e.name("probe"))
	if errors.Is(err, lock.ErrNoLeader) {
		err = nil
	}
	return true, err
}

func (e *env) elector(l lock.Locker) lock.Elector {
	e.t.Helper()
	el, ok := l.(lock.Elector)
	require.Truef(e.t, ok, "%T does not implement lock.Elector", l)
	return el
}

func (e *env) campaign(l lock.Locker, election, value string, opts ...lock.Option) lock.Term {
	e.t.Helper()
	term, err := e.elector(l).Campaign(e.ctx(), election, value, opts...)
	require.NoError(e.t, err, "Campaign(%q)", election)
	require.NotNil(e.t, term, "Campaign(%q) returned neither a term nor an error", election)
	require.Equal(e.t, election, term.Name(), "Term.Name")
	require.NotZero(e.t, term.Token(), "a term's token")
	return term
}

func (e *env) leader(l lock.Locker, election string) lock.LeaderInfo {
	e.t.Helper()
	info, err := e.elector(l).Leader(e.ctx(), election)
	require.NoError(e.t, err, "Leader(%q)", election)
	return info
}

// observe starts an Observe until ctx ends.
func (e *env) observe(ctx context.Context, l lock.Locker, election string) <-chan lock.LeaderInfo {
	e.t.Helper()
	ch, err := e.elector(l).Observe(ctx, election)
	require.NoError(e.t, err, "Observe(%q)", election)
	require.NotNil(e.t, ch, "Observe(%q) returned neither a channel nor an error", election)
	return ch
}

// nextState waits for the next state on ch.
func (e *env) nextState(ch <-chan lock.LeaderInfo, what string) lock.LeaderInfo {
	e.t.Helper()
	select {
	case info, ok := <-ch:
		require.Truef(e.t, ok, "the Observe channel closed while waiting for %s", what)
		assert.Zerof(e.t, info.Skipped, "%s: Skipped, for an observer that keeps up", what)
		return info
	case <-time.After(e.cfg.wait):
		e.t.Fatalf("timed out after %v waiting for Observe to deliver %s", e.cfg.wait, what)
	}
	panic("unreachable")
}

// waitObserveClosed drains ch until it is closed.
func (e *env) waitObserveClosed(ch <-chan lock.LeaderInfo, what string) {
	e.t.Helper()
	deadline := time.After(e.cfg.wait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			e.t.Fatalf("timed out after %v waiting for the Observe channel to close %s", e.cfg.wait, what)
		}
	}
}

// requireState asserts an observed or answered state.
func (e *env) requireState(got lock.LeaderInfo, election string, token uint64, value, what string) {
	e.t.Helper()
	require.Equalf(e.t, election, got.Election, "%s: Election", what)
	require.Equalf(e.t, token, got.Token, "%s: Token (0: the empty seat); got %+v", what, got)
	if token != 0 {
		require.Equalf(e.t, value, got.Value, "%s: Value", what)
		require.NotEmptyf(e.t, got.Holder, "%s: Holder", what)
	}
}

// testElectionOneLeader (I1, I2 for elections): six candidates over two
// Lockers campaign, lead and resign in turn. At most one is leader at any
// moment, tokens in election order strictly increase, and Leader, asked
// from the other Locker during a term, answers that term.
func testElectionOneLeader(e *env) {
	const candidates, rounds = 6, 5
	election := e.name("election")
	var (
		turn     = turns{role: "candidate", crowd: "leaders at once", token: "term token"}
		answers  []string // Leader's answers during a term, guarded by turn.mu
		electors = []lock.Elector{e.elector(e.a), e.elector(e.b)}
	)
	e.inRounds(candidates, rounds, func(ctx context.Context, c, r int) error {
		el, other := electors[c%2], electors[(c+1)%2]
		value := fmt.Sprintf("candidate-%d-round-%d", c, r)
		term, err := el.Campaign(ctx, election, value)
		if err != nil {
			return fmt.Errorf("candidate %d round %d: Campaign: %w", c, r, err)
		}
		tok := term.Token()
		turn.enter(c, r, tok)
		info, err := other.Leader(ctx, election)
		if err != nil || info.Token != tok || info.Value != value {
			noter(&turn.mu)(&answers, "candidate %d round %d: Leader during term %d (%q) = %+v, %v", c, r, tok, value, info, err)
		}
		turn.leave(c, r)
		if err := term.Release(ctx); err != nil {
			return fmt.Errorf("candidate %d round %d: Release: %w", c, r, err)
		}
		return nil
	})
	assert.Empty(e.t, turn.violations, "one leader at a time, increasing tokens")
	assert.Empty(e.t, answers, "Leader, asked during a term, must answer that term")
	assert.Equal(e.t, candidates*rounds, turn.grants, "terms")
	_, err := e.elector(e.a).Leader(e.ctx(), election)
	assert.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader after every candidate resigned")
}

// testElectionLeader: Leader answers ErrNoLeader for an empty seat, the
// term's token, value and holder while it lasts, a Proclaim's value under
// the same token, the next candidate's term after a resign, and
// ErrNoLeader again once nobody campaigns; a resigned term's Proclaim is
// ErrNotHeld.
func testElectionLeader(e *env) {
	election := e.name("leader")
	_, err := e.elector(e.b).Leader(e.ctx(), election)
	require.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader of an election nobody ran")

	first := e.campaign(e.a, election, "one")
	info := e.leader(e.b, election)
	e.requireState(info, election, first.Token(), "one", "Leader during the first term")
	assert.True(e.t, info.Elected(), "Elected")
	firstHolder := info.Holder

	require.NoError(e.t, first.Proclaim(e.ctx(), "one, proclaimed"), "Proclaim")
	e.requireState(e.leader(e.b, election), election, first.Token(), "one, proclaimed", "Leader after a Proclaim: same token, new value")

	out := make(chan campaigned, 1)
	e.goCampaign(e.ctx(), out, e.b, election, "two")
	e.waitWaiters(e.a, election, 1)
	e.requireState(e.leader(e.b, election), election, first.Token(), "one, proclaimed", "Leader while a candidate waits")

	e.release(first)
	r := e.recvTerm(out, "the waiting candidate's term")
	require.NoError(e.t, r.err, "the waiting candidate's Campaign after the leader resigned")
	assert.Greater(e.t, r.term.Token(), first.Token(), "the next term's token (I2)")
	info = e.leader(e.a, election)
	e.requireState(info, election, r.term.Token(), "two", "Leader after the hand-off")
	assert.NotEqual(e.t, firstHolder, info.Holder, "Holder: two Lockers are two holders")
	assert.ErrorIs(e.t, first.Proclaim(e.ctx(), "late"), lock.ErrNotHeld, "Proclaim after resigning")

	e.release(r.term)
	_, err = e.elector(e.a).Leader(e.ctx(), election)
	assert.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader once the last term resigned")
}

// campaigned is the outcome of a Campaign made in a goroutine; prevDone
// says whether the term before it had closed its Done when it returned.
type campaigned struct {
	term     lock.Term
	err      error
	prevDone bool
}

// goCampaign campaigns in a goroutine; prev, if given, is the term before,
// whose Done is looked at the moment Campaign returns.
func (e *env) goCampaign(ctx context.Context, out chan<- campaigned, l lock.Locker, election, value string, prev ...lock.Term) {
	el := e.elector(l)
	e.wg.Go(func() {
		term, err := el.Campaign(ctx, election, value)
		r := campaigned{term: term, err: err}
		if len(prev) > 0 {
			r.prevDone = isClosed(prev[0].Done())
		}
		out <- r
	})
}

func (e *env) recvTerm(ch <-chan campaigned, what string) campaigned {
	e.t.Helper()
	return receive(e, ch, what, "a Campaign")
}

// testElectionObserve: an observer gets the current state first, then
// every change in order: a term, its Proclaim, the next term straight
// after a resign with a candidate waiting (no empty seat in between), the
// empty seat (Token 0) after a resign with nobody waiting, a term whose
// Locker is then closed and the empty seat after it. A second observer
// starts with the current state. The channel closes when the observer's
// ctx ends, and when its Locker closes.
func testElectionObserve(e *env) {
	election := e.name("observe")
	ctx, stop := e.cancelable()
	ch := e.observe(ctx, e.b, election)
	e.requireState(e.nextState(ch, "the first state"), election, 0, "", "the first state of an election nobody ran")

	first := e.campaign(e.a, election, "one")
	e.requireState(e.nextState(ch, "the first term"), election, first.Token(), "one", "observed first term")
	require.NoError(e.t, first.Proclaim(e.ctx(), "one, proclaimed"))
	e.requireState(e.nextState(ch, "the Proclaim"), election, first.Token(), "one, proclaimed", "observed Proclaim")

	out := make(chan campaigned, 1)
	e.goCampaign(e.ctx(), out, e.b, election, "two")
	e.waitWaiters(e.a, election, 1)
	e.release(first)
	st := e.nextState(ch, "the state after a resign with a candidate waiting")
	r := e.recvTerm(out, "the waiting candidate's term")
	require.NoError(e.t, r.err, "the waiting candidate's Campaign")
	e.requireState(st, election, r.term.Token(), "two", "observed after a resign with a candidate waiting: the next term, with no empty seat between")

	e.release(r.term)
	e.requireState(e.nextState(ch, "the empty seat"), election, 0, "", "observed after a resign with nobody waiting: the empty seat")

	// A holder whose Locker closes; a late observer on another Locker.
	c, d := e.newLocker(), e.newLocker()
	third := e.campaign(c, election, "three")
	e.requireState(e.nextState(ch, "the third term"), election, third.Token(), "three", "observed third term")
	// The late observer's ctx does not end by itself: only d's Close can
	// close its channel below.
	lateCtx, stopLate := context.WithCancel(e.t.Context())
	e.t.Cleanup(stopLate)
	late := e.observe(lateCtx, d, election)
	e.requireState(e.nextState(late, "a late observer's first state"), election, third.Token(), "three", "a late observer's first state: the current one")
	require.NoError(e.t, c.Close(), "Close of the leader's Locker")
	e.waitClosed(third.Done(), "the Done of a term whose Locker closed")
	e.requireState(e.nextState(ch, "the empty seat after Close"), election, 0, "", "observed after the leader's Locker closed")
	e.requireState(e.nextState(late, "the empty seat after Close"), election, 0, "", "the late observer, after the leader's Locker closed")

	stop()
	e.waitObserveClosed(ch, "after its ctx ended")
	require.NoError(e.t, d.Close())
	e.waitObserveClosed(late, "after its Locker closed")
	assert.Greater(e.t, r.term.Token(), first.Token(), "tokens of successive terms")
	assert.Greater(e.t, third.Token(), r.term.Token(), "tokens of successive terms")
}

// testElectionObserveOrder: changes made while the observer reads nothing
// (a term, its Proclaim, the next term after a resign with a candidate
// waiting, the empty seat) are all delivered once it reads, in the
// store's order, none collapsed: four pending states are far below any
// observer's buffer (Skipped is allowed only when that overflows).
func testElectionObserveOrder(e *env) {
	election := e.name("observe-order")
	ctx, stop := e.cancelable()
	ch := e.observe(ctx, e.b, election)

	first := e.campaign(e.a, election, "one")
	require.NoError(e.t, first.Proclaim(e.ctx(), "one, proclaimed"))
	out := make(chan campaigned, 1)
	e.goCampaign(e.ctx(), out, e.b, election, "two")
	e.waitWaiters(e.a, election, 1)
	e.release(first)
	r := e.recvTerm(out, "the waiting candidate's term")
	require.NoError(e.t, r.err, "the waiting candidate's Campaign")
	e.release(r.term)

	want := []lock.LeaderInfo{
		{Election: election},
		{Election: election, Token: first.Token(), Value: "one"},
		{Election: election, Token: first.Token(), Value: "one, proclaimed"},
		{Election: election, Token: r.term.Token(), Value: "two"},
		{Election: election},
	}
	var wanted []string
	for _, w := range want {
		wanted = append(wanted, fmt.Sprintf("(%d %q)", w.Token, w.Value))
	}
	var got []string
	if e.cfg.observeEvery {
		for i := range want {
			info := e.nextState(ch, fmt.Sprintf("pending state %d of %d", i+1, len(want)))
			got = append(got, fmt.Sprintf("(%d %q)", info.Token, info.Value))
		}
		require.Equal(e.t, wanted, got, "pending states must be delivered in the store's order, each once: (token value) as observed")
	} else {
		// Some of them, in order, each once, the first (the state when
		// Observe returned) and the latest among them.
		next := 0
		for next < len(want) {
			info := e.nextState(ch, fmt.Sprintf("a pending state after %v", got))
			s := fmt.Sprintf("(%d %q)", info.Token, info.Value)
			got = append(got, s)
			at := slices.Index(wanted[next:], s)
			require.GreaterOrEqual(e.t, at, 0, "states must be some of %v, in the store's order, each once; got %v", wanted, got)
			require.True(e.t, next > 0 || at == 0, "the first state must be the one when Observe returned, %s; got %v", wanted[0], got)
			next += at + 1
		}
	}
	stop()
	e.waitObserveClosed(ch, "after its ctx ended")
}

// testElectionFIFO: with FIFO(), candidates are elected in the order they
// campaigned (the Elector promises first come, first served).
func testElectionFIFO(e *env) {
	if !e.cfg.fifo {
		e.t.Skip("the backend does not promise FIFO waiters (pass locktest.FIFO() if it does)")
	}
	const candidates = 3
	election := e.name("election-fifo")
	holder := e.campaign(e.a, election, "holder")
	type elected struct {
		id   int
		term lock.Term
		err  error
	}
	ctx := e.ctx()
	out := make(chan elected, candidates)
	for i := range candidates {
		e.waitWaiters(e.a, election, i)
		el := e.elector([]lock.Locker{e.b, e.a}[i%2])
		e.wg.Go(func() {
			term, err := el.Campaign(ctx, election, fmt.Sprintf("candidate-%d", i))
			out <- elected{id: i, term: term, err: err}
		})
	}
	e.waitWaiters(e.b, election, candidates)

	prev := holder
	for n := range candidates {
		e.release(prev)
		r := receive(e, out, fmt.Sprintf("term %d", n), "a Campaign")
		require.NoError(e.t, r.err, "term %d: candidate %d's Campaign failed; a waiting candidate must be elected when the term resigns (I4)", n, r.id)
		if r.id != n {
			_ = r.term.Release(e.ctx())
			e.t.Fatalf("term %d went to candidate %d: candidates must be elected in the order they campaigned (FIFO)", n, r.id)
		}
		assert.Greater(e.t, r.term.Token(), prev.Token(), "token of term %d (I2)", n)
		prev = r.term
	}
	e.release(prev)
	_, err := e.elector(e.b).Leader(e.ctx(), election)
	assert.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader after every candidate resigned")
}

// testElectionHandover (I3 for terms): the old term's Done is closed by
// the time the next candidate's Campaign returns, whether the old term
// resigned, its Locker closed or its TTL ran out.
func testElectionHandover(e *env) {
	for _, how := range []string{"Release", "Close", "TTL"} {
		election := e.name("handover-" + strings.ToLower(how))
		l := e.newLocker()
		var opts []lock.Option
		if how == "TTL" {
			opts = append(opts, lock.WithTTL(lock.MinTTL))
		}
		old := e.campaign(l, election, "old", opts...)
		out := make(chan campaigned, 1)
		e.goCampaign(e.ctx(), out, e.b, election, "new", old)
		if how != "TTL" {
			e.waitWaiters(e.a, election, 1)
		}
		switch how {
		case "Release":
			e.release(old)
		case "Close":
			require.NoError(e.t, l.Close())
		}
		r := e.recvTerm(out, "the next term after "+how)
		require.NoError(e.t, r.err, "the next candidate's Campaign after %s", how)
		assert.True(e.t, r.prevDone, "after %s: the old term's Done must be closed before the next term's Campaign returns (I3)", how)
		assert.Greater(e.t, r.term.Token(), old.Token(), "the next term's token after %s (I2)", how)
		e.waitClosed(old.Done(), "the old term's Done")
		assert.Error(e.t, old.Err(), "the old term's Err")
		e.release(r.term)
	}
}

// testElectionInvalidInput: bad election names are ErrInvalidName, bad
// values and options ErrInvalidOption, before anything is queued; an
// election on a name held as a mutex is ErrInvalidOption naming both
// types, and Observe reports such a name's seat as empty.
func testElectionInvalidInput(e *env) {
	el := e.elector(e.a)
	for _, bad := range []string{"", e.cfg.prefix + "a\nb", e.cfg.prefix + "\xff", padTo(e.cfg.prefix, lock.MaxNameLen+1, "x")} {
		term, err := el.Campaign(e.rejectCtx(), bad, "v")
		assert.ErrorIs(e.t, err, lock.ErrInvalidName, "Campaign(%q)", bad)
		assert.Nil(e.t, term, "Campaign(%q)", bad)
		_, err = el.Leader(e.rejectCtx(), bad)
		assert.ErrorIs(e.t, err, lock.ErrInvalidName, "Leader(%q)", bad)
		_, err = el.Observe(e.rejectCtx(), bad)
		assert.ErrorIs(e.t, err, lock.ErrInvalidName, "Observe(%q)", bad)
	}
	election := e.name("election-invalid")
	holder := e.campaign(e.b, election, "holder")
	for _, c := range []struct {
		what, value string
		opts        []lock.Option
	}{
		{"a value not UTF-8", "\xff", nil},
		{"a value of MaxOwnerLen+1 bytes", strings.Repeat("v", lock.MaxOwnerLen+1), nil},
		{"WithTTL(50ms)", "v", []lock.Option{lock.WithTTL(50 * time.Millisecond)}},
	} {
		term, err := el.Campaign(e.rejectCtx(), election, c.value, c.opts...)
		assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "Campaign with %s", c.what)
		if err == nil {
			_ = term.Release(e.ctx())
		}
	}
	assert.ErrorIs(e.t, holder.Proclaim(e.ctx(), "\xff"), lock.ErrInvalidOption, "Proclaim of a value not UTF-8")
	info := e.leader(e.a, election)
	e.requireState(info, election, holder.Token(), "holder", "Leader after rejected calls")
	assert.Zero(e.t, e.inspect(e.a, election).Waiters, "rejected Campaign calls must not queue")
	e.release(holder)

	mutex := e.name("election-on-mutex")
	held := e.acquire(e.b, mutex)
	term, err := el.Campaign(e.rejectCtx(), mutex, "v")
	e.assertRejected(term, err, lock.ErrInvalidOption, "Campaign on a name held as a mutex")
	assertNamesTypes(e, err, mutex, "mutex", "election")
	_, err = el.Leader(e.rejectCtx(), mutex)
	assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "Leader of a name held as a mutex")
	assertNamesTypes(e, err, mutex, "mutex")
	ctx, stop := e.cancelable()
	ch := e.observe(ctx, e.a, mutex)
	e.requireState(e.nextState(ch, "the state of a mutex"), mutex, 0, "", "Observe of a name held as a mutex: the empty seat")
	stop()
	e.waitObserveClosed(ch, "after its ctx ended")
	e.requireHeldBy(e.a, held, "after the election calls on the mutex")
	e.release(held)
}

// assertNamesTypes asserts that err's message, without name, names each
// of types.
func assertNamesTypes(e *env, err error, name string, types ...string) {
	e.t.Helper()
	if err == nil {
		return
	}
	msg := strings.ReplaceAll(err.Error(), name, "")
	for _, typ := range types {
		assert.Containsf(e.t, msg, typ, "the error must name the type %q", typ)
	}
}

// testLead: lock.Lead runs fn as the leader, with the term's token in
// fn's ctx, resigns however fn ends, returns fn's error, and reports a
// term that ended under fn (its TTL ran out) with fn's ctx cancelled.
func testLead(e *env) {
	el := e.elector(e.a)
	election := e.name("lead")
	ran := false
	err := lock.Lead(e.ctx(), el, election, "lead", func(ctx context.Context, term lock.Term) error {
		ran = true
		tok, ok := lock.TokenFromContext(ctx)
		assert.True(e.t, ok, "TokenFromContext inside Lead")
		assert.Equal(e.t, term.Token(), tok, "the token in fn's ctx")
		e.requireState(e.leader(e.b, election), election, tok, "lead", "Leader inside Lead")
		require.NoError(e.t, term.Proclaim(ctx, "proclaimed"))
		e.requireState(e.leader(e.b, election), election, tok, "proclaimed", "Leader after a Proclaim inside Lead")
		return nil
	})
	require.NoError(e.t, err, "Lead")
	assert.True(e.t, ran, "Lead did not run fn")
	_, err = e.elector(e.b).Leader(e.ctx(), election)
	assert.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader after Lead returned")

	errFn := errors.New("locktest: fn failed")
	err = lock.Lead(e.ctx(), el, election, "lead", func(context.Context, lock.Term) error { return errFn })
	assert.ErrorIs(e.t, err, errFn, "Lead must return fn's error")
	_, err = e.elector(e.b).Leader(e.ctx(), election)
	assert.ErrorIs(e.t, err, lock.ErrNoLeader, "Leader after Lead's fn failed")

	var cause error
	err = lock.Lead(e.ctx(), el, election, "ttl", func(ctx context.Context, _ lock.Term) error {
		select {
		case <-ctx.Done():
			cause = context.Cause(ctx)
		case <-time.After(e.cfg.wait):
		}
		return nil
	}, lock.WithTTL(lock.MinTTL))
	assert.ErrorIs(e.t, err, lock.ErrExpired, "Lead when the term expired while fn ran")
	assert.ErrorIs(e.t, cause, lock.ErrExpired, "context.Cause of fn's ctx when the term expired")
}
