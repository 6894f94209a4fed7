package locktest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// The failure-path rules of package lock (lock/DESIGN.md, "Failure
// paths"): R2, an ended lease's Refresh and Release say so and leave the
// name free in the store; R4, they return once the lease has ended whatever
// their ctx; R5, a call that ended because the store was unreachable wraps
// lock.ErrNoQuorum (and its ctx's error if ctx ended), and one that ended
// with its ctx on a reachable store returns the ctx's error alone.

// endBound bounds how long Release or Refresh may take to return once
// their lease has ended (R4). It is generous: the check is that they return,
// not how fast.
func (e *env) endBound() time.Duration { return 3 * e.cfg.wait }

// called is the outcome of a call made in a goroutine: its error, and
// whether its ctx had ended and its lease (if any) had ended when it
// returned.
type called struct {
	err      error
	ctxErr   error
	leaseEnd bool
}

// goCall runs call in a goroutine. The goroutine is not one of the
// subtest's: a call that never returns (what R4 forbids) must fail the
// subtest, not hang its cleanup. It only sends on a buffered channel.
func goCall(ctx context.Context, lease lock.Lease, call func(context.Context) error) <-chan called {
	ch := make(chan called, 1)
	go func() {
		err := call(ctx)
		c := called{err: err, ctxErr: ctx.Err()}
		if lease != nil {
			c.leaseEnd = isClosed(lease.Done())
		}
		ch <- c
	}()
	return ch
}

// await waits up to bound for the call on ch to return.
func (e *env) await(ch <-chan called, bound time.Duration, what string) called {
	e.t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(bound):
		e.t.Fatalf("%s did not return within %v (R4: Release and Refresh return once the lease has ended, whatever their ctx)", what, bound)
	}
	panic("unreachable")
}

// endCause is the sentinel among ErrReleased, ErrExpired and ErrLost that
// the ended lease's Err matches, or Err itself.
func endCause(lease lock.Lease) error {
	err := lease.Err()
	for _, s := range []error{lock.ErrReleased, lock.ErrExpired, lock.ErrLost} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// assertNotHeld checks the error of Release or Refresh of an ended lease
// (R2): ErrNotHeld, wrapping the cause of the lease's end.
func assertNotHeld(e *env, err error, lease lock.Lease, what string) {
	e.t.Helper()
	require.Truef(e.t, isClosed(lease.Done()), "%s: the lease should have ended", what)
	assert.ErrorIsf(e.t, err, lock.ErrNotHeld, "%s (R2)", what)
	assert.ErrorIsf(e.t, err, endCause(lease), "%s must wrap the cause of the lease's end, %v (R2)", what, lease.Err())
}

// assertCtxAlone checks the error of a call whose ctx ended while the
// store was reachable (R5): the ctx's error, and not ErrNoQuorum.
func assertCtxAlone(e *env, err, ctxErr error, what string) {
	e.t.Helper()
	assert.ErrorIsf(e.t, err, ctxErr, "%s", what)
	assert.NotErrorIsf(e.t, err, lock.ErrNoQuorum, "%s on a reachable store: the ctx's error alone (R5)", what)
}

// waitFree polls until name has no holder and no waiters.
func (e *env) waitFree(l lock.Locker, name, why string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("%q is free %s", name, why), func() (bool, string) {
		info, err := e.poll(l, name)
		return err == nil && !info.Held && info.Waiters == 0, fmtInfo(info, err)
	})
}

// testEndedLease (R2, R4): Refresh and Release of a lease that has ended
// (released, or expired at its TTL) return ErrNotHeld wrapping the cause,
// with context.Background() too, and the name is left free.
func testEndedLease(e *env) {
	const ttl = 300 * time.Millisecond
	var leases []lock.Lease
	for _, k := range leaseKinds {
		lease := e.acquire(e.a, e.name("ended-released"), k.opts...)
		e.release(lease)
		leases = append(leases, lease)
	}
	expired := e.acquire(e.a, e.name("ended-expired"), lock.WithTTL(ttl))
	e.waitClosed(expired.Done(), "an unrefreshed TTL lease to expire")
	leases = append(leases, expired)

	for _, lease := range leases {
		for _, c := range []struct {
			method string
			call   func(context.Context) error
		}{{"Refresh", lease.Refresh}, {"Release", lease.Release}} {
			what := fmt.Sprintf("%s(context.Background()) of a lease ended with %v", c.method, lease.Err())
			r := e.await(goCall(context.Background(), nil, c.call), e.endBound(), what)
			assertNotHeld(e, r.err, lease, what)
		}
		e.waitFree(e.b, lease.Name(), "after Release of its ended lease (R2)")
	}
}

// outageCall is one call made while the store is cut.
type outageCall struct {
	what  string
	lease lock.Lease // the lease the call is about, if any
	call  func(ctx context.Context) error
	// read: the call only reads; made at the cut it may still be answered
	// (lock/DESIGN.md, R5).
	read bool
}

// testOutageNoQuorum (R5): with the store unreachable, every call fails
// with ErrNoQuorum, also wrapping its ctx's error if it ended with its
// ctx; a Refresh may instead find that its lease ended meanwhile. The calls
// are made once at once, and again after the session lease has ended (its
// session lapsed while the store was unreachable), when a backend may be
// waiting for a new session. After the store is back, nothing the failed
// calls did is left behind.
func testOutageNoQuorum(e *env) {
	defer e.heal()
	session := e.acquire(e.a, e.name("noquorum-session"))
	ttlLease := e.acquire(e.a, e.name("noquorum-ttl"), lock.WithTTL(time.Minute))
	free := e.name("noquorum-free")
	// drop releases a lease granted against the rule, and returns err.
	drop := func(ctx context.Context) func(lock.Lease, error) error {
		return func(l lock.Lease, err error) error {
			if l != nil {
				_ = l.Release(ctx)
			}
			return err
		}
	}
	calls := []outageCall{
		{what: "TryAcquire of a free name", call: func(ctx context.Context) error { return drop(ctx)(e.b.TryAcquire(ctx, free)) }},
		{what: "Acquire of a free name", call: func(ctx context.Context) error { return drop(ctx)(e.a.Acquire(ctx, free)) }},
		{what: "Acquire of a held name", call: func(ctx context.Context) error { return drop(ctx)(e.b.Acquire(ctx, session.Name())) }},
		{what: "Inspect", read: true, call: func(ctx context.Context) error { _, err := e.a.Inspect(ctx, session.Name()); return err }},
		{what: "Refresh of a TTL lease", lease: ttlLease, call: ttlLease.Refresh},
		{what: "Refresh of a session lease", read: true, lease: session, call: session.Refresh},
	}

	e.cut()
	outageCalls(e, calls, "", true)
	select {
	case <-session.Done():
		outageCalls(e, calls[:4], ", after the session lease ended", false)
	case <-time.After(e.endBound()):
		e.t.Logf("the session lease was still held %v into the outage: calls after its end not checked", e.endBound())
	}

	e.heal()
	probe := e.newLocker() // the cut may have cost e.a and e.b their sessions
	for _, l := range []lock.Lease{session, ttlLease} {
		_ = l.Release(e.ctx()) // held, or ended meanwhile: either way it must end
		e.waitFree(probe, l.Name(), "after the store came back and its lease was released")
	}
	e.waitFree(probe, free, "after the store came back: the failed calls must leave nothing behind")
}

// outageCalls makes calls together while the store is cut, each with a ctx
// of its own that ends after a second unless the backend gives up sooner,
// and checks their errors (R5). atCut: the calls are made the moment the
// store was cut off, when a read may still be answered.
func outageCalls(e *env, calls []outageCall, when string, atCut bool) {
	e.t.Helper()
	results := make([]<-chan called, len(calls))
	for i, c := range calls {
		ctx, cancel := context.WithTimeout(e.t.Context(), time.Second)
		e.t.Cleanup(cancel)
		results[i] = goCall(ctx, c.lease, c.call)
	}
	for i, c := range calls {
		what := c.what + " while the store was unreachable" + when
		r := e.await(results[i], e.endBound(), what)
		if c.lease != nil && r.leaseEnd && errors.Is(r.err, lock.ErrNotHeld) {
			assertNotHeld(e, r.err, c.lease, what+", after its lease ended")
			continue
		}
		if r.err == nil && c.read && atCut {
			continue // answered from a confirmation just before the cut
		}
		if !assert.Errorf(e.t, r.err, "%s succeeded", what) {
			continue
		}
		assert.ErrorIsf(e.t, r.err, lock.ErrNoQuorum, "%s (R5)", what)
		if r.ctxErr != nil {
			assert.ErrorIsf(e.t, r.err, r.ctxErr, "%s, ended with its ctx: it must wrap the ctx's error too (R5)", what)
		}
	}
}

// testOutageEndedLease (R4, R2): a TTL lease ends at its TTL while the
// store is unreachable. A Release(context.Background()) already waiting on
// the store returns once the lease has ended, as do Release and Refresh
// made afterwards, with ErrNotHeld wrapping the cause; once the store is
// back, the name is free.
func testOutageEndedLease(e *env) {
	defer e.heal()
	const ttl = time.Second
	lease := e.acquire(e.a, e.name("outage-ended"), lock.WithTTL(ttl))

	e.cut()
	release := goCall(context.Background(), lease, lease.Release)
	e.waitEnded(lease, ttl, "a TTL lease to end at its TTL while the store is unreachable")
	what := "Release(context.Background()) waiting on an unreachable store when its lease ended"
	r := e.await(release, e.endBound(), what)
	if !r.leaseEnd {
		// It gave up before the lease ended; that is allowed if it says why.
		assert.ErrorIsf(e.t, r.err, lock.ErrNoQuorum, "%s, which returned before the lease ended (R5)", what)
	} else {
		assertNotHeld(e, r.err, lease, what)
	}
	for _, c := range []struct {
		method string
		call   func(context.Context) error
	}{{"Refresh", lease.Refresh}, {"Release", lease.Release}} {
		what := c.method + "(context.Background()) of a lease that ended while the store is unreachable"
		r := e.await(goCall(context.Background(), lease, c.call), e.endBound(), what)
		assertNotHeld(e, r.err, lease, what)
	}

	e.heal()
	e.waitFree(e.newLocker(), lease.Name(), "after the store came back")
}

// testOutageLateRefresh (R2): a Refresh sent to an unreachable store is
// still in flight when the lease ends at its TTL; the store may apply it
// when it comes back. Refresh must not return nil for the ended lease, and
// after Release the name must be free well before the TTL that late
// Refresh may have given it in the store has run out: within the suite's
// wait timeout of the store's return, with a TTL of twice that.
func testOutageLateRefresh(e *env) {
	defer e.heal()
	ttl := 2 * e.cfg.wait
	lease := e.acquire(e.a, e.name("late-refresh"), lock.WithTTL(ttl))

	e.cut()
	refresh := goCall(context.Background(), lease, lease.Refresh)
	e.waitEnded(lease, ttl, "a TTL lease to end at its TTL while its Refresh waits on an unreachable store")
	healed := time.Now() // before the store can apply the late Refresh
	e.heal()

	what := "Refresh(context.Background()) in flight when its lease ended"
	r := e.await(refresh, e.endBound(), what)
	switch {
	case !r.leaseEnd:
		assert.ErrorIsf(e.t, r.err, lock.ErrNoQuorum, "%s, which returned before the lease ended (R5)", what)
	case r.err == nil:
		e.t.Errorf("%s returned nil although the lease ended (%v): a Refresh must not report a lease held that has ended (R2)", what, lease.Err())
	default:
		assertNotHeld(e, r.err, lease, what)
	}
	what = "Release(context.Background()) of the lease after its late Refresh"
	r = e.await(goCall(context.Background(), lease, lease.Release), e.endBound(), what)
	assertNotHeld(e, r.err, lease, what)

	probe := e.newLocker()
	var seen string
	for {
		info, err := e.poll(probe, lease.Name())
		if err == nil && !info.Held {
			return
		}
		seen = fmtInfo(info, err)
		if time.Since(healed) > e.cfg.wait {
			break
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-e.t.Context().Done():
			return
		}
	}
	e.t.Errorf("%q still held %v after the store came back, by a lease that ended before it (last seen: %s): "+
		"Release of an ended lease must release it in the store, in case a late Refresh extended it (R2)", lease.Name(), e.cfg.wait, seen)
}

// waitEnded waits for lease to end, for up to its TTL plus the suite's
// wait timeout.
func (e *env) waitEnded(lease lock.Lease, ttl time.Duration, what string) {
	e.t.Helper()
	select {
	case <-lease.Done():
	case <-time.After(ttl + e.cfg.wait):
		e.t.Fatalf("timed out after %v waiting for %s", ttl+e.cfg.wait, what)
	}
}
