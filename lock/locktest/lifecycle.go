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

// leaseKinds are the two kinds of lease every backend offers. TTL leases in
// the suite are at most a minute long, so that a failed run leaves nothing
// behind for long on a shared store.
var leaseKinds = []struct {
	name string
	opts []lock.Option
}{
	{"session", nil},
	{"TTL", []lock.Option{lock.WithTTL(time.Minute)}},
}

// ttlSlack allows for the store's clock granularity when the suite checks
// that a TTL lease was not granted elsewhere before its TTL ran out.
const ttlSlack = 10 * time.Millisecond

// assertEnded checks every signal of an ended lease.
func assertEnded(e *env, lease lock.Lease, want error, when string) {
	e.t.Helper()
	assert.Truef(e.t, isClosed(lease.Done()), "%s: Done must be closed", when)
	assert.ErrorIsf(e.t, lease.Err(), want, "%s: Err", when)
	assert.Errorf(e.t, lease.Context().Err(), "%s: Context must be cancelled", when)
	assert.ErrorIsf(e.t, context.Cause(lease.Context()), want, "%s: context.Cause(Context)", when)
}

// assertHeld checks every signal of a held lease.
func assertHeld(e *env, lease lock.Lease, when string) {
	e.t.Helper()
	assert.Falsef(e.t, isClosed(lease.Done()), "%s: Done closed (Err %v)", when, lease.Err())
	assert.NoErrorf(e.t, lease.Err(), "%s: Err", when)
	assert.NoErrorf(e.t, lease.Context().Err(), "%s: Context", when)
}

// testHeldState: a lease is held, with every signal saying so, until it is
// released, and it outlives the ctx of the Acquire call that made it.
func testHeldState(e *env) {
	for _, k := range leaseKinds {
		name := e.name("held")
		ctx, cancel := e.cancelable()
		lease, err := e.a.Acquire(ctx, name, k.opts...)
		require.NoError(e.t, err, "Acquire of a %s lease", k.name)
		require.NotNil(e.t, lease)
		cancel() // Acquire's ctx bounds the call, not the lease

		assert.Equal(e.t, name, lease.Name(), "Name")
		assert.NotZero(e.t, lease.Token(), "token 0 is reserved for 'not held'")
		assertHeld(e, lease, k.name+" lease after its Acquire ctx ended")
		assert.NoError(e.t, lease.Refresh(e.ctx()), "Refresh of a held %s lease", k.name)
		assertHeld(e, lease, k.name+" lease after Refresh")
		e.requireHeldBy(e.b, lease, k.name+" lease")

		e.release(lease)
		assertEnded(e, lease, lock.ErrReleased, k.name+" lease when Release returns")
	}
}

// testInspect: Inspect reports holder, token, owner, queue length and the
// time left of a TTL lease, from either Locker.
func testInspect(e *env) {
	const owner = "locktest owner ✓ host-1/pid 42\n"
	name := e.name("inspect")
	assert.Equal(e.t, lock.Info{Name: name}, e.inspect(e.a, name), "Inspect of a name never locked")

	holder := e.acquire(e.a, name, lock.WithOwner(owner))
	want := lock.Info{Name: name, Held: true, Token: holder.Token(), Owner: owner}
	assert.Equal(e.t, want, core(e.inspect(e.a, name)), "Inspect of a held session lease from the holder's Locker")
	assert.Equal(e.t, want, core(e.inspect(e.b, name)), "Inspect of a held session lease from the other Locker")

	ctx1, cancel1 := e.cancelable()
	ctx2, cancel2 := e.cancelable()
	out := make(chan acquired, 2)
	e.goAcquire(ctx1, out, 1, e.b, name)
	e.waitWaiters(e.a, name, 1)
	e.goAcquire(ctx2, out, 2, e.a, name)
	e.waitWaiters(e.b, name, 2)
	want.Waiters = 2
	assert.Equal(e.t, want, core(e.inspect(e.a, name)), "Inspect with two queued Acquire calls")

	cancel1()
	r := e.recv(out, "the first waiter to withdraw")
	assert.ErrorIs(e.t, r.err, context.Canceled, "waiter %d", r.id)
	want.Waiters = 1
	assert.Equal(e.t, want, core(e.inspect(e.b, name)), "Inspect after one waiter withdrew")
	cancel2()
	r = e.recv(out, "the second waiter to withdraw")
	assert.ErrorIs(e.t, r.err, context.Canceled, "waiter %d", r.id)
	want.Waiters = 0
	assert.Equal(e.t, want, core(e.inspect(e.b, name)), "Inspect after both waiters withdrew")

	e.release(holder)
	assert.Equal(e.t, lock.Info{Name: name}, e.inspect(e.b, name), "Inspect after Release")

	const ttl = time.Minute
	ttlName := e.name("inspect-ttl")
	lease := e.acquire(e.b, ttlName, lock.WithTTL(ttl))
	for _, when := range []string{"after the grant", "after Refresh"} {
		info := e.requireHeldBy(e.a, lease, "TTL lease "+when)
		assert.Empty(e.t, info.Owner, "Owner without WithOwner")
		assert.Greater(e.t, info.ExpiresIn, time.Duration(0), "ExpiresIn of a TTL lease %s", when)
		assert.LessOrEqual(e.t, info.ExpiresIn, ttl, "ExpiresIn of a TTL lease %s", when)
		require.NoError(e.t, lease.Refresh(e.ctx()), "Refresh")
	}
	e.release(lease)
	assert.Equal(e.t, lock.Info{Name: ttlName}, e.inspect(e.a, ttlName), "Inspect after the TTL lease was released")
}

// testAcquireCanceled (I4): an Acquire whose ctx is cancelled while queued
// returns the ctx's error and leaves nothing behind.
func testAcquireCanceled(e *env) {
	name := e.name("cancel")
	holder := e.acquire(e.a, name)

	ended, cancelNow := e.cancelable()
	cancelNow()
	lease, err := e.b.Acquire(ended, name)
	e.assertRejected(lease, err, context.Canceled, "Acquire of a held name with an ended ctx")
	info := e.requireHeldBy(e.a, holder, "after an Acquire with an ended ctx")
	assert.Zero(e.t, info.Waiters, "an Acquire with an ended ctx must not stay queued")

	free := e.name("cancel-free")
	if lease, err := e.a.Acquire(ended, free); err != nil {
		assert.ErrorIs(e.t, err, context.Canceled, "Acquire of a free name with an ended ctx: a lease or the ctx's error")
		e.requireFree(e.b, free, "after an Acquire with an ended ctx failed")
	} else {
		e.release(lease)
	}

	ctx, cancel := e.cancelable()
	out := make(chan acquired, 1)
	e.goAcquire(ctx, out, 0, e.b, name)
	e.waitWaiters(e.a, name, 1)
	cancel()
	r := e.recv(out, "Acquire to return after its ctx was cancelled")
	e.assertRejected(r.lease, r.err, context.Canceled, "Acquire whose ctx was cancelled while queued")
	assertCtxAlone(e, r.err, context.Canceled, "Acquire whose ctx was cancelled while queued behind a holder")
	info = e.requireHeldBy(e.a, holder, "after the waiter's ctx was cancelled")
	assert.Zero(e.t, info.Waiters, "a cancelled Acquire must withdraw its request before it returns (I4)")

	e.release(holder)
	e.requireFree(e.b, name, "after the holder released: the cancelled waiter must have left nothing behind (I4)")
	e.release(e.tryAcquire(e.b, name))
}

// testAcquireDeadline (I4): the same when the ctx's deadline passes.
func testAcquireDeadline(e *env) {
	const wait = 250 * time.Millisecond
	name := e.name("deadline")
	holder := e.acquire(e.a, name)

	ctx, cancel := context.WithTimeout(e.t.Context(), wait)
	defer cancel()
	deadline, _ := ctx.Deadline()
	lease, err := e.b.Acquire(ctx, name)
	early := time.Until(deadline)
	e.assertRejected(lease, err, context.DeadlineExceeded, "Acquire of a held name until its deadline")
	assertCtxAlone(e, err, context.DeadlineExceeded, "Acquire queued behind a holder until its deadline")
	assert.Less(e.t, early, 50*time.Millisecond, "Acquire gave up %v before its ctx's deadline", early)

	info := e.requireHeldBy(e.a, holder, "after the waiter's deadline passed")
	assert.Zero(e.t, info.Waiters, "an Acquire past its deadline must withdraw its request before it returns (I4)")
	e.release(holder)
	e.requireFree(e.b, name, "after the holder released: the timed-out waiter must have left nothing behind (I4)")
}

// testAcquireCancelRace (I4): a waiter's cancellation races the holder's
// Release. Either the waiter gets the lease, or it gets its ctx's error and
// the grant that raced it is released before Acquire returns. Rounds vary
// the order: cancel and Release at once, cancel just before Release, and
// cancel just after it.
func testAcquireCancelRace(e *env) {
	for i := range 15 {
		name := e.name("cancelrace")
		holder := e.acquire(e.a, name)
		ctx, cancel := e.cancelable()
		out := make(chan acquired, 1)
		e.goAcquire(ctx, out, 0, e.b, name)
		e.waitWaiters(e.a, name, 1)

		switch i % 3 {
		case 0:
			start, canceled := make(chan struct{}), make(chan struct{})
			e.wg.Go(func() {
				defer close(canceled)
				<-start
				cancel()
			})
			close(start)
			e.release(holder)
			e.waitClosed(canceled, "the cancelling goroutine")
		case 1:
			cancel()
			e.release(holder)
		case 2:
			e.release(holder)
			cancel()
		}
		r := e.recv(out, "the racing Acquire")

		if r.err == nil {
			require.NotNil(e.t, r.lease)
			assert.Greater(e.t, r.lease.Token(), holder.Token(), "token")
			e.requireHeldBy(e.a, r.lease, "Acquire granted before it was cancelled")
			e.release(r.lease)
		} else {
			e.assertRejected(r.lease, r.err, context.Canceled, "Acquire cancelled as the name was released")
		}
		e.requireFree(e.a, name, "a grant that raced the cancellation must be released before Acquire returns (I4)")
	}
}

// testReleaseTwice: Release ends the lease, every signal says so, and a
// second Release, even after the name was granted again, returns ErrNotHeld
// and touches nobody else's lease.
func testReleaseTwice(e *env) {
	for _, k := range leaseKinds {
		name := e.name("release")
		lease := e.acquire(e.a, name, k.opts...)
		e.release(lease)
		assertEnded(e, lease, lock.ErrReleased, k.name+" lease when Release returns")
		assert.ErrorIs(e.t, lease.Release(e.ctx()), lock.ErrNotHeld, "second Release of a %s lease", k.name)
		assertEnded(e, lease, lock.ErrReleased, k.name+" lease after the second Release")
		e.requireFree(e.b, name, "after Release")

		next := e.acquire(e.b, name)
		assert.ErrorIs(e.t, lease.Release(e.ctx()), lock.ErrNotHeld, "Release of an ended %s lease after the name was granted again", k.name)
		e.requireHeldBy(e.a, next, "a stale Release must not end the next holder's lease")
		assertHeld(e, next, "next holder after a stale Release")
		e.release(next)
	}
}

// testRefreshAfterRelease: Refresh of a released lease returns ErrNotHeld and
// does not extend anyone else's lease.
func testRefreshAfterRelease(e *env) {
	const nextTTL = 2 * time.Second
	for _, k := range leaseKinds {
		name := e.name("refresh-released")
		lease := e.acquire(e.a, name, k.opts...)
		e.release(lease)
		assert.ErrorIs(e.t, lease.Refresh(e.ctx()), lock.ErrNotHeld, "Refresh of a released %s lease", k.name)
		assertEnded(e, lease, lock.ErrReleased, k.name+" lease after Refresh")
		e.requireFree(e.b, name, "Refresh of a released lease must not take the name again")

		next := e.acquire(e.b, name, lock.WithTTL(nextTTL))
		assert.ErrorIs(e.t, lease.Refresh(e.ctx()), lock.ErrNotHeld, "Refresh of a released %s lease after the name was granted again", k.name)
		info := e.requireHeldBy(e.a, next, "after a stale Refresh")
		assert.LessOrEqual(e.t, info.ExpiresIn, nextTTL, "a stale Refresh must not extend the next holder's lease")
		assertHeld(e, next, "next holder after a stale Refresh")
		e.release(next)
	}
}

// testTTLExpiry (I2, I3): an unrefreshed TTL lease expires; a waiter on the
// other Locker then gets the name with a larger token, and the old holder
// learns first and can no longer release or refresh.
func testTTLExpiry(e *env) {
	const ttl = 300 * time.Millisecond
	name := e.name("ttl")
	stalls := watchStalls()
	defer stalls.end()
	start := time.Now()
	holder := e.acquire(e.a, name, lock.WithTTL(ttl))

	type grant struct {
		lease      lock.Lease
		err        error
		at         time.Time
		holderDone bool // whether the old holder's Done was closed when the grant arrived
	}
	out := make(chan grant, 1)
	ctx := e.ctx()
	e.wg.Go(func() {
		lease, err := e.b.Acquire(ctx, name)
		out <- grant{lease, err, time.Now(), isClosed(holder.Done())}
	})
	// The waiter's Acquire is bounded by ctx, so it reports a missing grant
	// itself; the wait for it is longer, so that which of the two timers
	// fires first (a matter of load) cannot change the verdict's message.
	var g grant
	select {
	case g = <-out:
	case <-time.After(e.endBound()):
		e.t.Fatalf("waiter not granted within %v of a %v TTL lease's grant, and its Acquire ignored its ctx", e.endBound(), ttl)
	}
	if g.err != nil && ctx.Err() != nil {
		e.t.Fatalf("waiter not granted within %v of a %v TTL lease's grant: %v", e.cfg.wait, ttl, g.err)
	}
	require.NoError(e.t, g.err, "waiter's Acquire")
	assert.GreaterOrEqual(e.t, g.at.Sub(start), ttl-ttlSlack, "the waiter was granted before the holder's TTL ran out")
	assertLearnedFirst(e, holder, g.at, g.holderDone, stalls)
	assertEnded(e, holder, lock.ErrExpired, "holder after its TTL")
	assert.Greater(e.t, g.lease.Token(), holder.Token(), "token of the grant after expiry (I2)")

	assert.ErrorIs(e.t, holder.Release(e.ctx()), lock.ErrNotHeld, "Release of an expired lease")
	assert.ErrorIs(e.t, holder.Refresh(e.ctx()), lock.ErrNotHeld, "Refresh of an expired lease")
	assertEnded(e, holder, lock.ErrExpired, "holder after a stale Release and Refresh")
	e.requireHeldBy(e.a, g.lease, "Release and Refresh of the expired lease must not touch the new holder")
	assertHeld(e, g.lease, "new holder")
	e.release(g.lease)
}

// assertLearnedFirst checks I3 for a holder whose name was seen granted
// elsewhere at grantedAt: its Done was closed by then (holderDone), or, on
// a machine whose timers ran late meanwhile, closed within that lateness.
// A Done that closes much later than the worst delay of this process's
// timers is the backend's fault, not the machine's. It returns once Done
// is closed.
func assertLearnedFirst(e *env, holder lock.Lease, grantedAt time.Time, holderDone bool, stalls *stallWatch) {
	e.t.Helper()
	if holderDone {
		return
	}
	e.waitClosed(holder.Done(), "the expired holder's Done")
	lag := time.Since(grantedAt)
	worst := stalls.end()
	allowed := 2*worst + lateSlack
	assert.LessOrEqual(e.t, lag, allowed,
		"the holder's Done must close before the name is granted elsewhere (I3): it closed %v after the grant was seen, more than twice the worst timer lateness in this process meanwhile (%v) plus %v",
		lag, worst, lateSlack)
}

// lateSlack is what assertLearnedFirst allows beyond the measured timer
// lateness: the goroutines that see the grant and the close are woken by
// channels, not timers, and are scheduled a little later still.
const lateSlack = 10 * time.Millisecond

// testRefreshExtendsTTL: a TTL lease refreshed well within its TTL stays held
// for several TTLs, and expires once refreshing stops.
//
// A machine too busy to keep the refresh schedule lets a correct lease
// expire, so the suite checks only windows in which it kept the schedule:
// an attempt in which one Refresh and the checks after it ended more than
// TTL/2 after the previous Refresh began is discarded and made again.
func testRefreshExtendsTTL(e *env) {
	const (
		ttl      = 400 * time.Millisecond
		every    = 100 * time.Millisecond
		span     = 1200 * time.Millisecond
		attempts = 3
	)
	var (
		holder      lock.Lease
		lastRefresh time.Time // no later than the store's last extension of holder
		name        string
	)
	for attempt := 1; holder == nil; attempt++ {
		name = e.name("refresh")
		var late string
		holder, lastRefresh, late = keepRefreshed(e, name, ttl, every, span)
		if late != "" {
			if attempt == attempts {
				e.t.Skipf("this machine could not keep a %v refresh schedule in %d attempts (last: %s)", every, attempts, late)
			}
			e.t.Logf("attempt %d discarded: %s", attempt, late)
		}
	}

	e.waitClosed(holder.Done(), "the lease to expire once refreshing stopped")
	assertEnded(e, holder, lock.ErrExpired, "after refreshing stopped")

	var (
		next  lock.Lease
		gotAt time.Time
		ctx   = e.ctx()
	)
	e.eventually("the other Locker can take the expired name", func() (bool, string) {
		lease, err := e.b.TryAcquire(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		next, gotAt = lease, time.Now()
		return true, ""
	})
	assert.GreaterOrEqual(e.t, gotAt.Sub(lastRefresh), ttl-ttlSlack, "the name was granted elsewhere before the TTL since the last Refresh ran out")
	assert.Greater(e.t, next.Token(), holder.Token(), "token after expiry")
	e.release(next)
}

// keepRefreshed acquires name with a TTL and refreshes it every interval
// for span, checking after each Refresh that the lease is held and that the
// other Locker cannot take it. It returns the lease and the start of its
// last Refresh, or, if the machine did not keep the schedule, why not.
func keepRefreshed(e *env, name string, ttl, every, span time.Duration) (lock.Lease, time.Time, string) {
	e.t.Helper()
	start := time.Now() // no later than the grant
	holder := e.acquire(e.a, name, lock.WithTTL(ttl))
	prev := start // the start of the last successful Refresh (or of Acquire)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for time.Since(start) < span {
		<-tick.C
		at := time.Now()
		refreshErr := holder.Refresh(e.ctx())
		doneClosed := isClosed(holder.Done())
		lease, tryErr := e.b.TryAcquire(e.ctx(), name)
		if tryErr == nil {
			_ = lease.Release(e.ctx())
		}
		if d := time.Since(prev); d > ttl/2 {
			_ = holder.Release(e.ctx())
			return nil, time.Time{}, fmt.Sprintf("a Refresh and the checks after it ended %v after the previous Refresh began (TTL %v)", d, ttl)
		}
		require.NoError(e.t, refreshErr, "Refresh %v after the grant of a %v TTL lease refreshed every %v", at.Sub(start), ttl, every)
		require.False(e.t, doneClosed, "lease ended %v after its grant although refreshed every %v (TTL %v): %v",
			at.Sub(start), every, ttl, holder.Err())
		require.ErrorIs(e.t, tryErr, lock.ErrHeld, "TryAcquire from the other Locker %v after the grant of a refreshed lease", time.Since(start))
		prev = at
	}
	return holder, prev, ""
}

// testClose: Close ends every lease of the Locker, withdraws its queued
// calls, and makes later calls fail with ErrClosed; the other Locker is
// unaffected.
func testClose(e *env) {
	a, b := e.a, e.b
	n1, n2, n3 := e.name("close-session"), e.name("close-ttl"), e.name("close-queued")
	session := e.acquire(a, n1)
	ttl := e.acquire(a, n2, lock.WithTTL(time.Minute))
	other := e.acquire(b, n3)
	out := make(chan acquired, 1)
	e.goAcquire(e.ctx(), out, 0, a, n3)
	e.waitWaiters(b, n3, 1)

	require.NoError(e.t, a.Close(), "Close")
	assertEnded(e, session, lock.ErrReleased, "session lease when its Locker's Close returns")
	assertEnded(e, ttl, lock.ErrReleased, "TTL lease when its Locker's Close returns")
	r := e.recv(out, "the queued Acquire to return after Close")
	e.assertRejected(r.lease, r.err, lock.ErrClosed, "queued Acquire when its Locker is closed")

	info := e.requireHeldBy(b, other, "the other Locker's lease after Close")
	assert.Zero(e.t, info.Waiters, "Close must withdraw the Locker's queued Acquire calls (I4)")
	assertHeld(e, other, "the other Locker's lease after Close")
	e.release(e.tryAcquire(b, n1))
	e.release(e.tryAcquire(b, n2))

	fresh := e.name("close-after")
	lease, err := a.Acquire(e.ctx(), fresh)
	e.assertRejected(lease, err, lock.ErrClosed, "Acquire of a free name after Close")
	lease, err = a.Acquire(e.ctx(), n3)
	e.assertRejected(lease, err, lock.ErrClosed, "Acquire of a held name after Close")
	lease, err = a.TryAcquire(e.ctx(), fresh)
	e.assertRejected(lease, err, lock.ErrClosed, "TryAcquire after Close")
	_, err = a.Inspect(e.ctx(), fresh)
	assert.ErrorIs(e.t, err, lock.ErrClosed, "Inspect after Close")
	e.requireFree(b, fresh, "calls on a closed Locker must not take the name")
	info = e.requireHeldBy(b, other, "after calls on the closed Locker")
	assert.Zero(e.t, info.Waiters, "an Acquire on a closed Locker must not queue")

	// The leases have ended, and their Locker is closed: either error is
	// right, but neither call may succeed.
	for _, l := range []lock.Lease{session, ttl} {
		err := l.Release(e.ctx())
		assert.True(e.t, errors.Is(err, lock.ErrNotHeld) || errors.Is(err, lock.ErrClosed),
			"Release of %q after Close: %v, want ErrNotHeld or ErrClosed", l.Name(), err)
		err = l.Refresh(e.ctx())
		assert.True(e.t, errors.Is(err, lock.ErrNotHeld) || errors.Is(err, lock.ErrClosed),
			"Refresh of %q after Close: %v, want ErrNotHeld or ErrClosed", l.Name(), err)
	}
	assert.NoError(e.t, a.Close(), "second Close")
	e.release(other)
}

// handedOn is the outcome of a call, made in a goroutine, that waits for
// old to end: what it got, when, and whether old's Done was closed then.
type handedOn struct {
	lease   lock.Lease
	err     error
	at      time.Time
	oldDone bool
}

// expiryHandoff checks I3 and I2 at the end of a TTL: holder, a TTL lease
// of ttl granted no earlier than start, holds back call, made on another
// Locker. call must be granted once the TTL ran out and not before, the
// holder's Done closed by then (within the timer lateness stalls saw),
// with a larger token; the holder must have ended with ErrExpired. It
// returns the lease call got.
func expiryHandoff(e *env, holder lock.Lease, ttl time.Duration, start time.Time, stalls *stallWatch, what string,
	call func(context.Context) (lock.Lease, error),
) lock.Lease {
	e.t.Helper()
	ctx := e.ctx()
	out := make(chan handedOn, 1)
	e.wg.Go(func() {
		lease, err := call(ctx)
		out <- handedOn{lease, err, time.Now(), isClosed(holder.Done())}
	})
	var g handedOn
	select {
	case g = <-out:
	case <-time.After(e.endBound()):
		e.t.Fatalf("%s: waiter not granted within %v of a %v TTL lease's grant, and its call ignored its ctx", what, e.endBound(), ttl)
	}
	if g.err != nil && ctx.Err() != nil {
		e.t.Fatalf("%s: waiter not granted within %v of a %v TTL lease's grant: %v", what, e.cfg.wait, ttl, g.err)
	}
	require.NoError(e.t, g.err, "%s: the waiter's call", what)
	require.NotNil(e.t, g.lease, "%s: the waiter's call returned neither a lease nor an error", what)
	assert.GreaterOrEqual(e.t, g.at.Sub(start), ttl-ttlSlack, "%s: the waiter was granted before the holder's TTL ran out", what)
	assertLearnedFirst(e, holder, g.at, g.oldDone, stalls)
	assertEnded(e, holder, lock.ErrExpired, what+": the holder after its TTL")
	assert.Greater(e.t, g.lease.Token(), holder.Token(), "%s: token of the grant after expiry (I2)", what)
	assert.ErrorIs(e.t, holder.Release(e.ctx()), lock.ErrNotHeld, "%s: Release of the expired lease", what)
	assertHeld(e, g.lease, what+": the lease granted after expiry")
	return g.lease
}
