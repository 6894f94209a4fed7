package locktest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// The semaphore group (lock/DESIGN.md, "Semaphores" and "Checking them"),
// run for a Locker that implements lock.Semaphores.
var semaphoreTests = []subtest{
	{"Limit", testSemaphoreLimit},
	{"FIFO", testSemaphoreFIFO},
	{"Tokens", testSemaphoreTokens},
	{"TryAcquire", testSemaphoreTry},
	{"TTLExpiry", testSemaphoreTTLExpiry},
	{"TTLEach", testSemaphoreTTLEach},
	{"Close", testSemaphoreClose},
	{"InvalidInput", testSemaphoreInvalidInput},
	{"DoPermit", testDoPermit},
}

// probeSemaphores is the group's first call: a permit of a fresh name,
// released at once.
func probeSemaphores(e *env) (bool, error) {
	s, ok := e.a.(lock.Semaphores)
	if !ok {
		return false, nil
	}
	p, err := s.TryAcquirePermit(e.ctx(), e.name("probe"), 1)
	if err == nil {
		err = p.Release(e.ctx())
	}
	return true, err
}

func (e *env) semaphores(l lock.Locker) lock.Semaphores {
	e.t.Helper()
	s, ok := l.(lock.Semaphores)
	require.Truef(e.t, ok, "%T does not implement lock.Semaphores", l)
	return s
}

// checkPermit asserts what every permit returned must be.
func (e *env) checkPermit(p lock.Permit, err error, name string, limit int, call string) lock.Permit {
	e.t.Helper()
	require.NoError(e.t, err, "%s(%q, %d)", call, name, limit)
	require.NotNil(e.t, p, "%s(%q, %d) returned neither a permit nor an error", call, name, limit)
	require.Equal(e.t, name, p.Name(), "Permit.Name")
	require.NotZero(e.t, p.Token(), "a permit's token")
	require.GreaterOrEqual(e.t, p.Slot(), 0, "a permit's slot")
	require.Less(e.t, p.Slot(), limit, "a permit's slot must be below the limit")
	return p
}

func (e *env) permit(l lock.Locker, name string, limit int, opts ...lock.Option) lock.Permit {
	e.t.Helper()
	p, err := e.semaphores(l).AcquirePermit(e.ctx(), name, limit, opts...)
	return e.checkPermit(p, err, name, limit, "AcquirePermit")
}

func (e *env) tryPermit(l lock.Locker, name string, limit int, opts ...lock.Option) lock.Permit {
	e.t.Helper()
	p, err := e.semaphores(l).TryAcquirePermit(e.ctx(), name, limit, opts...)
	return e.checkPermit(p, err, name, limit, "TryAcquirePermit")
}

// testSemaphoreLimit (I1 for semaphores): nine workers over two Lockers
// take permits of a semaphore of limit 3 in turn. Counted in the process,
// never more than 3 are held at once, and no two held at once share a
// slot; every grant's token is new.
func testSemaphoreLimit(e *env) {
	const limit, workers, rounds = 3, 9, 5
	name := e.name("sem-limit")
	var (
		inside    atomic.Int32
		mu        sync.Mutex // guards the fields below
		slots     [limit]bool
		tokens    = make(map[uint64]bool)
		overLimit []string // each list holds up to 10 violations of one kind
		badSlots  []string
		badTokens []string
		sems      = []lock.Semaphores{e.semaphores(e.a), e.semaphores(e.b)}
	)
	e.inRounds(workers, rounds, func(ctx context.Context, w, r int) error {
		p, err := sems[w%2].AcquirePermit(ctx, name, limit)
		if err != nil {
			return fmt.Errorf("worker %d round %d: AcquirePermit: %w", w, r, err)
		}
		n := inside.Add(1)
		slot := p.Slot()
		mu.Lock()
		if n > limit {
			note(&overLimit, "worker %d round %d: %d permits held at once, limit %d (I1)", w, r, n, limit)
		}
		switch {
		case slot < 0 || slot >= limit:
			note(&badSlots, "worker %d round %d: slot %d outside [0, %d)", w, r, slot, limit)
		case slots[slot]:
			note(&badSlots, "worker %d round %d: slot %d held twice at once", w, r, slot)
		default:
			slots[slot] = true
		}
		if tokens[p.Token()] {
			note(&badTokens, "worker %d round %d: token %d granted twice (I2)", w, r, p.Token())
		}
		tokens[p.Token()] = true
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		if slot >= 0 && slot < limit {
			slots[slot] = false
		}
		mu.Unlock()
		inside.Add(-1)
		if err := p.Release(ctx); err != nil {
			return fmt.Errorf("worker %d round %d: Release: %w", w, r, err)
		}
		return nil
	})
	assert.Empty(e.t, overLimit, "at most limit permits held at once")
	assert.Empty(e.t, badSlots, "permits held at once on distinct slots below the limit")
	assert.Empty(e.t, badTokens, "a token per grant")
	assert.Len(e.t, tokens, workers*rounds, "grants")
	e.requireFree(e.a, name, "after every worker released")
}

// testSemaphoreFIFO (I4): with every permit held and callers queued, each
// release grants one waiter, the permit's slot passes to it, and, with
// FIFO(), waiters are granted in the order they queued. A full semaphore
// answers TryAcquirePermit with ErrHeld.
func testSemaphoreFIFO(e *env) {
	const limit, waiters = 2, 4
	name := e.name("sem-fifo")
	held := []lock.Permit{e.permit(e.a, name, limit), e.permit(e.b, name, limit)}
	assert.NotEqual(e.t, held[0].Slot(), held[1].Slot(), "slots of two permits held at once")

	ctx := e.ctx()
	out := make(chan permitted, waiters)
	for i := range waiters {
		if e.cfg.fifo {
			e.waitWaiters(e.a, name, i)
		}
		e.goPermit(ctx, out, i, []lock.Locker{e.b, e.a}[i%2], name, limit)
	}
	e.waitWaiters(e.b, name, waiters)
	p, err := e.semaphores(e.a).TryAcquirePermit(e.ctx(), name, limit)
	e.assertRejected(p, err, lock.ErrHeld, "TryAcquirePermit of a full semaphore")

	last := max(held[0].Token(), held[1].Token())
	for n := range waiters {
		gone := held[0]
		e.release(gone)
		assertEnded(e, gone, lock.ErrReleased, "permit when Release returns")
		r := e.recvPermit(out, fmt.Sprintf("grant %d after a Release", n))
		require.NoError(e.t, r.err, "grant %d: waiter %d's AcquirePermit failed; a released permit must go to a waiter (I4)", n, r.id)
		if e.cfg.fifo {
			require.Equal(e.t, n, r.id, "grant %d went to waiter %d: waiters must be served in queue order (FIFO)", n, r.id)
		}
		assert.Equal(e.t, gone.Slot(), r.permit.Slot(), "grant %d: the released slot is the only free one", n)
		assert.Greater(e.t, r.permit.Token(), last, "token of grant %d (I2)", n)
		last = r.permit.Token()
		select {
		case r2 := <-out:
			e.t.Errorf("waiter %d returned (err %v) while %d permits were held (I1)", r2.id, r2.err, limit)
		default:
		}
		held = append(held[1:], r.permit)
	}
	for _, p := range held {
		e.release(p)
	}
	e.requireFree(e.b, name, "after the last permits were released")
}

type permitted struct {
	id     int
	permit lock.Permit
	err    error
}

func (e *env) goPermit(ctx context.Context, out chan<- permitted, id int, l lock.Locker, name string, limit int) {
	s := e.semaphores(l)
	e.wg.Go(func() {
		p, err := s.AcquirePermit(ctx, name, limit)
		out <- permitted{id: id, permit: p, err: err}
	})
}

func (e *env) recvPermit(ch <-chan permitted, what string) permitted {
	e.t.Helper()
	return receive(e, ch, what, "an AcquirePermit")
}

// testSemaphoreTokens (I2): every permit's token exceeds every earlier
// grant's of the name, across Lockers, Try, lease kinds and permits held
// at once.
func testSemaphoreTokens(e *env) {
	const limit = 3
	name := e.name("sem-tokens")
	var last uint64
	var held []lock.Permit
	for i := range 9 {
		l := []lock.Locker{e.a, e.b}[i%2]
		var opts []lock.Option
		if i%4 >= 2 {
			opts = append(opts, lock.WithTTL(lock.MaxTTL))
		}
		var p lock.Permit
		if i%3 == 0 {
			p = e.tryPermit(l, name, limit, opts...)
		} else {
			p = e.permit(l, name, limit, opts...)
		}
		assert.Greater(e.t, p.Token(), last, "grant %d of %q: token must exceed every earlier token of the name", i, name)
		last = p.Token()
		held = append(held, p)
		if len(held) == limit {
			e.release(held[0])
			held = held[1:]
		}
	}
	for _, p := range held {
		e.release(p)
	}
	e.requireFree(e.a, name, "after every permit was released")
}

// testSemaphoreTTLExpiry (I3, I2): a TTL permit that is not refreshed
// expires; a waiter on the other Locker then gets its slot, once the TTL
// ran out, with a larger token, and the old holder learns first. The other
// permit stays held.
func testSemaphoreTTLExpiry(e *env) {
	const limit, ttl = 2, 300 * time.Millisecond
	name := e.name("sem-ttl")
	other := e.permit(e.a, name, limit)
	stalls := watchStalls()
	defer stalls.end()
	start := time.Now()
	holder := e.permit(e.a, name, limit, lock.WithTTL(ttl))
	s := e.semaphores(e.b)
	next := expiryHandoff(e, holder, ttl, start, stalls, "a TTL permit", func(ctx context.Context) (lock.Lease, error) {
		p, err := s.AcquirePermit(ctx, name, limit)
		if err != nil {
			return nil, err
		}
		return p, nil
	})
	p, ok := next.(lock.Permit)
	require.Truef(e.t, ok, "AcquirePermit returned a %T, not a lock.Permit", next)
	assert.Equal(e.t, holder.Slot(), p.Slot(), "the expired permit's slot is the only free one")
	assertHeld(e, other, "the other permit, after the TTL permit expired")
	e.release(p)
	e.release(other)
	e.requireFree(e.b, name, "after every permit was released")
}

// testSemaphoreClose: Close ends every permit of the Locker, session and
// TTL, fails its queued calls with ErrClosed, and the waiters of the other
// Locker are granted the freed slots with larger tokens; later calls on the
// closed Locker fail with ErrClosed.
func testSemaphoreClose(e *env) {
	const limit = 3
	name := e.name("sem-close")
	c := e.newLocker()
	session := e.permit(c, name, limit)
	ttl := e.permit(c, name, limit, lock.WithTTL(time.Minute))
	other := e.permit(e.b, name, limit)

	ctx := e.ctx()
	own := make(chan permitted, 1)
	e.goPermit(ctx, own, 0, c, name, limit)
	e.waitWaiters(e.b, name, 1)
	out := make(chan permitted, 2)
	for i := 1; i <= 2; i++ {
		e.goPermit(ctx, out, i, e.b, name, limit)
	}
	e.waitWaiters(e.b, name, 3)

	require.NoError(e.t, c.Close(), "Close")
	assertEnded(e, session, lock.ErrReleased, "session permit when its Locker's Close returns")
	assertEnded(e, ttl, lock.ErrReleased, "TTL permit when its Locker's Close returns")
	r := e.recvPermit(own, "the closed Locker's queued AcquirePermit")
	e.assertRejected(r.permit, r.err, lock.ErrClosed, "a queued AcquirePermit of a closing Locker")

	freed := map[int]bool{session.Slot(): true, ttl.Slot(): true}
	last := max(session.Token(), ttl.Token(), other.Token())
	var granted []lock.Permit
	for range 2 {
		r := e.recvPermit(out, "a waiter of the other Locker after Close")
		require.NoError(e.t, r.err, "waiter %d: the permits of a closed Locker must go to the waiters (I4)", r.id)
		assert.True(e.t, freed[r.permit.Slot()], "waiter %d got slot %d; the closed Locker's slots %v were the free ones", r.id, r.permit.Slot(), freed)
		delete(freed, r.permit.Slot())
		assert.Greater(e.t, r.permit.Token(), last, "waiter %d's token (I2)", r.id)
		granted = append(granted, r.permit)
	}
	assertHeld(e, other, "the other Locker's permit after Close")
	assert.Zero(e.t, e.inspect(e.b, name).Waiters, "waiters after Close and the grants")

	sc := e.semaphores(c)
	p, err := sc.AcquirePermit(e.ctx(), name, limit)
	e.assertRejected(p, err, lock.ErrClosed, "AcquirePermit after Close")
	p, err = sc.TryAcquirePermit(e.ctx(), e.name("sem-close-after"), limit)
	e.assertRejected(p, err, lock.ErrClosed, "TryAcquirePermit after Close")
	for _, p := range append(granted, other) {
		e.release(p)
	}
	e.requireFree(e.b, name, "after every permit was released")
}

// testSemaphoreTry: TryAcquirePermit grants while permits are free, on
// distinct slots, and answers ErrHeld from either Locker once all are
// held, without queueing.
func testSemaphoreTry(e *env) {
	const limit = 2
	name := e.name("sem-try")
	p0, p1 := e.tryPermit(e.a, name, limit), e.tryPermit(e.b, name, limit)
	assert.NotEqual(e.t, p0.Slot(), p1.Slot(), "slots of two permits held at once")
	for _, l := range []lock.Locker{e.a, e.b} {
		p, err := e.semaphores(l).TryAcquirePermit(e.ctx(), name, limit)
		e.assertRejected(p, err, lock.ErrHeld, "TryAcquirePermit with every permit held")
	}
	assert.Zero(e.t, e.inspect(e.a, name).Waiters, "TryAcquirePermit must not queue")
	assert.NoError(e.t, p0.Err(), "a holder's Err after failed TryAcquirePermit calls")
	e.release(p0)
	p2 := e.tryPermit(e.b, name, limit)
	assert.Equal(e.t, p0.Slot(), p2.Slot(), "the released slot is the only free one")
	e.release(p1)
	e.release(p2)
	e.requireFree(e.a, name, "after every permit was released")
}

// testSemaphoreInvalidInput: bad names are ErrInvalidName; a limit out of
// range, a bad option, a limit other than the one in force, and a name
// held as another type are ErrInvalidOption, naming both limits or both
// types, before anything is queued. A free name takes any limit.
func testSemaphoreInvalidInput(e *env) {
	s := e.semaphores(e.a)
	for _, bad := range []string{"", e.cfg.prefix + "a\nb", e.cfg.prefix + "\xff"} {
		p, err := s.AcquirePermit(e.rejectCtx(), bad, 1)
		e.assertRejected(p, err, lock.ErrInvalidName, "AcquirePermit(%q)", bad)
		p, err = s.TryAcquirePermit(e.rejectCtx(), bad, 1)
		e.assertRejected(p, err, lock.ErrInvalidName, "TryAcquirePermit(%q)", bad)
	}
	const limit, other = 7, 11
	name := e.name("sem-invalid")
	holder := e.permit(e.b, name, limit)
	for _, c := range []struct {
		what  string
		limit int
		opts  []lock.Option
	}{
		{"limit 0", 0, nil},
		{"limit -1", -1, nil},
		{"limit MaxPermits+1", lock.MaxPermits + 1, nil},
		{"WithTTL(50ms)", limit, []lock.Option{lock.WithTTL(50 * time.Millisecond)}},
	} {
		p, err := s.AcquirePermit(e.rejectCtx(), name, c.limit, c.opts...)
		e.assertRejected(p, err, lock.ErrInvalidOption, "AcquirePermit with %s", c.what)
		p, err = s.TryAcquirePermit(e.rejectCtx(), name, c.limit, c.opts...)
		e.assertRejected(p, err, lock.ErrInvalidOption, "TryAcquirePermit with %s", c.what)
	}
	p, err := s.AcquirePermit(e.rejectCtx(), name, other)
	e.assertRejected(p, err, lock.ErrInvalidOption, "AcquirePermit with limit %d of a semaphore of limit %d", other, limit)
	assertNamesLimits(e, err, name, limit, other)
	p, err = s.TryAcquirePermit(e.rejectCtx(), name, other)
	e.assertRejected(p, err, lock.ErrInvalidOption, "TryAcquirePermit with limit %d of a semaphore of limit %d", other, limit)
	assertNamesLimits(e, err, name, limit, other)
	lease, err := e.a.Acquire(e.rejectCtx(), name)
	e.assertRejected(lease, err, lock.ErrInvalidOption, "Acquire of a name held as a semaphore")
	assertNamesTypes(e, err, name, "semaphore", "mutex")
	assert.Zero(e.t, e.inspect(e.a, name).Waiters, "rejected calls must not queue")
	assert.NoError(e.t, holder.Err(), "the holder's Err after rejected calls")
	e.release(holder)
	e.requireFree(e.a, name, "after the holder released")
	e.release(e.permit(e.a, name, other)) // free: any limit

	mutex := e.name("sem-on-mutex")
	held := e.acquire(e.b, mutex)
	p, err = s.AcquirePermit(e.rejectCtx(), mutex, 2)
	e.assertRejected(p, err, lock.ErrInvalidOption, "AcquirePermit on a name held as a mutex")
	assertNamesTypes(e, err, mutex, "mutex", "semaphore")
	e.requireHeldBy(e.a, held, "after the permit calls on the mutex")
	e.release(held)
}

// assertNamesLimits asserts that err's message, without name, names both
// limits.
func assertNamesLimits(e *env, err error, name string, limits ...int) {
	e.t.Helper()
	if err == nil {
		return
	}
	msg := strings.ReplaceAll(err.Error(), name, "")
	for _, n := range limits {
		assert.Regexpf(e.t, regexp.MustCompile(`\b`+strconv.Itoa(n)+`\b`), msg, "the error must name the limit %d", n)
	}
}

// testDoPermit: lock.DoPermit runs fn holding a permit, with the token in
// fn's ctx, and releases it however fn ends.
func testDoPermit(e *env) {
	const limit = 2
	name := e.name("do-permit")
	s := e.semaphores(e.a)
	ran := false
	err := lock.DoPermit(e.ctx(), s, name, limit, func(ctx context.Context, p lock.Permit) error {
		ran = true
		tok, ok := lock.TokenFromContext(ctx)
		assert.True(e.t, ok, "TokenFromContext inside DoPermit")
		assert.Equal(e.t, p.Token(), tok, "the token in fn's ctx")
		other := e.tryPermit(e.b, name, limit)
		assert.NotEqual(e.t, p.Slot(), other.Slot(), "a second permit beside DoPermit's")
		e.release(other)
		return nil
	})
	require.NoError(e.t, err, "DoPermit")
	assert.True(e.t, ran, "DoPermit did not run fn")
	e.requireFree(e.b, name, "after DoPermit returned")

	errFn := errors.New("locktest: fn failed")
	err = lock.DoPermit(e.ctx(), s, name, limit, func(context.Context, lock.Permit) error { return errFn })
	assert.ErrorIs(e.t, err, errFn, "DoPermit must return fn's error")
	e.requireFree(e.b, name, "after DoPermit's fn failed")

	err = lock.DoPermit(e.ctx(), s, name, 0, func(context.Context, lock.Permit) error { return nil })
	assert.ErrorIs(e.t, err, lock.ErrInvalidOption, "DoPermit with limit 0")
}

// testSemaphoreTTLEach (I4): every TTL permit of a name expires on its own
// TTL: two unrefreshed TTL permits both end in the store, which then shows
// the name free (a store that kept one expiry timer per name would hold
// the first for ever).
func testSemaphoreTTLEach(e *env) {
	const limit, ttl = 3, 300 * time.Millisecond
	name := e.name("sem-ttl-each")
	e.permit(e.a, name, limit, lock.WithTTL(ttl))
	e.permit(e.a, name, limit, lock.WithTTL(ttl))
	e.waitFree(e.b, name, "after every TTL lease expired unrefreshed")
}
