package locktest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// The read-write group (lock/DESIGN.md, "RWLockers" and "Checking them"),
// run for a Locker that implements lock.RWLockers.
var rwTests = []subtest{
	{"Exclusion", testRWExclusion},
	{"ReadersTogether", testRWReadersTogether},
	{"WriterPreference", testRWWriterPreference},
	{"WithdrawnWriter", testRWWithdrawnWriter},
	{"HandoffReaders", testRWHandoffReaders},
	{"TTLExpiry", testRWTTLExpiry},
	{"TTLEach", testRWTTLEach},
	{"Close", testRWClose},
	{"WriterToken", testRWWriterToken},
	{"NoUpgrade", testRWNoUpgrade},
	{"InvalidInput", testRWInvalidInput},
	{"DoReadWrite", testDoReadWrite},
}

// probeRWLockers is the group's first call: a read lease of a fresh name,
// released at once.
func probeRWLockers(e *env) (bool, error) {
	rw, ok := e.a.(lock.RWLockers)
	if !ok {
		return false, nil
	}
	l, err := rw.TryAcquireRead(e.ctx(), e.name("probe"))
	if err == nil {
		err = l.Release(e.ctx())
	}
	return true, err
}

func (e *env) rw(l lock.Locker) lock.RWLockers {
	e.t.Helper()
	rw, ok := l.(lock.RWLockers)
	require.Truef(e.t, ok, "%T does not implement lock.RWLockers", l)
	return rw
}

func (e *env) checkRW(lease lock.Lease, err error, name, call string) lock.Lease {
	e.t.Helper()
	require.NoError(e.t, err, "%s(%q)", call, name)
	require.NotNil(e.t, lease, "%s(%q) returned neither a lease nor an error", call, name)
	require.Equal(e.t, name, lease.Name(), "Lease.Name")
	require.NotZero(e.t, lease.Token(), "a lease's token")
	return lease
}

func (e *env) read(l lock.Locker, name string) lock.Lease {
	e.t.Helper()
	lease, err := e.rw(l).AcquireRead(e.ctx(), name)
	return e.checkRW(lease, err, name, "AcquireRead")
}

func (e *env) tryRead(l lock.Locker, name string) lock.Lease {
	e.t.Helper()
	lease, err := e.rw(l).TryAcquireRead(e.ctx(), name)
	return e.checkRW(lease, err, name, "TryAcquireRead")
}

func (e *env) tryWrite(l lock.Locker, name string) lock.Lease {
	e.t.Helper()
	lease, err := e.rw(l).TryAcquireWrite(e.ctx(), name)
	return e.checkRW(lease, err, name, "TryAcquireWrite")
}

// goRW calls AcquireRead or AcquireWrite in a goroutine.
func (e *env) goRW(ctx context.Context, out chan<- acquired, id int, l lock.Locker, name string, write bool) {
	rw := e.rw(l)
	e.wg.Go(func() {
		acquire := rw.AcquireRead
		if write {
			acquire = rw.AcquireWrite
		}
		lease, err := acquire(ctx, name)
		out <- acquired{id: id, lease: lease, err: err}
	})
}

// noneReturned asserts that no call sent its outcome on out yet.
func (e *env) noneReturned(out <-chan acquired, while string) {
	e.t.Helper()
	select {
	case r := <-out:
		if r.err == nil {
			_ = r.lease.Release(e.ctx())
		}
		e.t.Fatalf("call %d returned (err %v) %s", r.id, r.err, while)
	default:
	}
}

// testRWExclusion (I1, I2 for read-write locks): eight workers over two
// Lockers take read and write leases of one name in turn. Counted in the
// process, a writer is never inside with anyone else and a reader never
// with a writer; a writer's token exceeds every token granted before it,
// a reader's every earlier writer's.
func testRWExclusion(e *env) {
	const workers, rounds = 8, 6
	name := e.name("rw")
	var (
		readers, writers atomic.Int32
		mu               sync.Mutex // guards the fields below
		maxToken         uint64     // of every grant so far
		maxWrite         uint64     // of every write grant so far
		grants           int
		exclusion        []string // up to 10 violations of I1
		fencing          []string // up to 10 violations of I2
		rws              = []lock.RWLockers{e.rw(e.a), e.rw(e.b)}
	)
	violation := noter(&mu)
	e.inRounds(workers, rounds, func(ctx context.Context, w, r int) error {
		rw := rws[w%2]
		write := (w+r)%3 == 0
		acquire, mine, others := rw.AcquireRead, &readers, &writers
		if write {
			acquire, mine, others = rw.AcquireWrite, &writers, &readers
		}
		lease, err := acquire(ctx, name)
		if err != nil {
			return fmt.Errorf("worker %d round %d (write %v): %w", w, r, write, err)
		}
		n := mine.Add(1)
		if write && n != 1 {
			violation(&exclusion, "worker %d round %d: %d writers at once (I1)", w, r, n)
		}
		if o := others.Load(); o != 0 {
			violation(&exclusion, "worker %d round %d (write %v): inside with %d of the other mode (I1)", w, r, write, o)
		}
		tok := lease.Token()
		mu.Lock()
		floor := maxWrite
		if write {
			floor = maxToken
			maxWrite = max(maxWrite, tok)
		}
		maxToken = max(maxToken, tok)
		grants++
		mu.Unlock()
		if tok <= floor {
			violation(&fencing, "worker %d round %d (write %v): token %d not above %d granted before it (I2)", w, r, write, tok, floor)
		}
		runtime.Gosched()
		if o := others.Load(); o != 0 {
			violation(&exclusion, "worker %d round %d (write %v): inside with %d of the other mode (I1)", w, r, write, o)
		}
		mine.Add(-1)
		if err := lease.Release(ctx); err != nil {
			return fmt.Errorf("worker %d round %d: Release: %w", w, r, err)
		}
		return nil
	})
	assert.Empty(e.t, exclusion, "many readers or one writer")
	assert.Empty(e.t, fencing, "a writer's token above every earlier grant's, a reader's above every earlier writer's")
	assert.Equal(e.t, workers*rounds, grants, "grants")
	e.requireFree(e.a, name, "after every worker released")
}

// testRWReadersTogether: read leases from both Lockers, blocking and Try,
// are held together, each with its own increasing token; a write is then
// refused (Try) without queueing. A write lease, once held, refuses every
// Try.
func testRWReadersTogether(e *env) {
	name := e.name("rw-readers")
	r1 := e.read(e.a, name)
	r2 := e.tryRead(e.b, name)
	r3 := e.read(e.b, name)
	assert.Greater(e.t, r2.Token(), r1.Token(), "tokens of read leases (I2)")
	assert.Greater(e.t, r3.Token(), r2.Token(), "tokens of read leases (I2)")
	for _, r := range []lock.Lease{r1, r2, r3} {
		assert.NoError(e.t, r.Err(), "a reader's Err while three read leases are held")
	}
	w, err := e.rw(e.a).TryAcquireWrite(e.ctx(), name)
	e.assertRejected(w, err, lock.ErrHeld, "TryAcquireWrite while read leases are held")
	assert.Zero(e.t, e.inspect(e.a, name).Waiters, "TryAcquireWrite must not queue")
	for _, r := range []lock.Lease{r1, r2, r3} {
		e.release(r)
	}

	writer := e.tryWrite(e.b, name)
	assert.Greater(e.t, writer.Token(), r3.Token(), "a writer's token after the readers (I2)")
	for _, l := range []lock.Locker{e.a, e.b} {
		r, err := e.rw(l).TryAcquireRead(e.ctx(), name)
		e.assertRejected(r, err, lock.ErrHeld, "TryAcquireRead while a write lease is held")
		w, err := e.rw(l).TryAcquireWrite(e.ctx(), name)
		e.assertRejected(w, err, lock.ErrHeld, "TryAcquireWrite while a write lease is held")
	}
	assert.Zero(e.t, e.inspect(e.a, name).Waiters, "Try calls must not queue")
	e.release(writer)
	e.requireFree(e.a, name, "after the writer released")
}

// testRWWriterPreference: a queued writer holds back every later reader
// (TryAcquireRead answers ErrHeld, AcquireRead queues) until it has had
// the lease; then the reader gets in.
func testRWWriterPreference(e *env) {
	name := e.name("rw-pref")
	r1 := e.read(e.a, name)
	ctx := e.ctx()
	out := make(chan acquired, 2)
	e.goRW(ctx, out, 0, e.b, name, true)
	e.waitWaiters(e.a, name, 1)

	r, err := e.rw(e.a).TryAcquireRead(e.ctx(), name)
	e.assertRejected(r, err, lock.ErrHeld, "TryAcquireRead behind a queued writer: a queued writer holds back later readers")
	e.goRW(ctx, out, 1, e.a, name, false)
	e.eventually("the later reader queues behind the writer", func() (bool, string) {
		e.noneReturned(out, "while a read lease was held and a writer queued before it: a queued writer holds back later readers")
		info, err := e.poll(e.b, name)
		return err == nil && info.Waiters == 2, fmtInfo(info, err)
	})

	e.release(r1)
	assertEnded(e, r1, lock.ErrReleased, "read lease when Release returns")
	w := e.recv(out, "the writer after the reader released")
	require.NoError(e.t, w.err, "the queued writer's AcquireWrite")
	require.Equal(e.t, 0, w.id, "the writer queued first must be granted first")
	assert.Greater(e.t, w.lease.Token(), r1.Token(), "the writer's token (I2)")
	e.noneReturned(out, "while the write lease was held (I1)")
	e.release(w.lease)
	r2 := e.recv(out, "the later reader after the writer released")
	require.NoError(e.t, r2.err, "the later reader's AcquireRead")
	assert.Greater(e.t, r2.lease.Token(), w.lease.Token(), "the reader's token after the writer (I2)")
	e.release(r2.lease)
	e.requireFree(e.a, name, "after everyone released")
}

// testRWWithdrawnWriter (I4): readers queued behind a writer are granted
// as soon as the writer withdraws, while the first reader still holds.
func testRWWithdrawnWriter(e *env) {
	name := e.name("rw-withdrawn")
	r1 := e.read(e.a, name)
	wctx, withdraw := e.cancelable()
	wout := make(chan acquired, 1)
	e.goRW(wctx, wout, 0, e.b, name, true)
	e.waitWaiters(e.a, name, 1)
	ctx := e.ctx()
	out := make(chan acquired, 2)
	e.goRW(ctx, out, 1, e.a, name, false)
	e.goRW(ctx, out, 2, e.b, name, false)
	e.waitWaiters(e.a, name, 3)
	e.noneReturned(out, "behind a queued writer")

	withdraw()
	w := e.recv(wout, "the withdrawn writer")
	if w.err == nil {
		_ = w.lease.Release(e.ctx())
	}
	require.ErrorIs(e.t, w.err, context.Canceled, "the writer's AcquireWrite after its ctx was cancelled")
	for range 2 {
		r := e.recv(out, "a reader behind the withdrawn writer")
		require.NoError(e.t, r.err, "reader %d behind a withdrawn writer must be granted while the first reader holds (I4)", r.id)
		assert.Greater(e.t, r.lease.Token(), r1.Token(), "reader %d's token", r.id)
		defer e.release(r.lease)
	}
	assert.NoError(e.t, r1.Err(), "the first reader's Err")
	assert.Zero(e.t, e.inspect(e.b, name).Waiters, "waiters after the readers were granted")
	e.release(r1)
}

// testRWHandoffReaders (I2, I4, writer preference): with a writer holding
// and the queue reader, reader, writer, reader, the writer's release grants
// the two head readers in one hand-off, each with its own token above the
// writer's, and leaves the writer and the reader behind it queued; the
// readers' releases grant the writer, and its release the last reader.
func testRWHandoffReaders(e *env) {
	name := e.name("rw-handoff")
	writer := e.tryWrite(e.a, name)
	ctx := e.ctx()
	out := make(chan acquired, 4)
	for i, write := range []bool{false, false, true, false} {
		e.waitWaiters(e.a, name, i)
		e.goRW(ctx, out, i, []lock.Locker{e.b, e.a}[i%2], name, write)
	}
	e.waitWaiters(e.b, name, 4)
	e.noneReturned(out, "while a write lease was held (I1)")

	e.release(writer)
	var readers []lock.Lease
	for range 2 {
		r := e.recv(out, "a head reader after the writer released")
		require.NoError(e.t, r.err, "call %d after the writer released", r.id)
		if r.id > 1 {
			_ = r.lease.Release(e.ctx())
			e.t.Fatalf("call %d was granted: a hand-off must not grant readers queued behind a writer, and the two head readers must be granted together (I4)", r.id)
		}
		assert.Greater(e.t, r.lease.Token(), writer.Token(), "reader %d's token after the writer (I2)", r.id)
		readers = append(readers, r.lease)
	}
	assert.NotEqual(e.t, readers[0].Token(), readers[1].Token(), "readers granted in one hand-off must have distinct tokens (I2)")
	info := e.inspect(e.b, name)
	assert.True(e.t, info.Held, "Inspect after the readers were granted: %+v", info)
	assert.Equal(e.t, 2, info.Waiters, "Inspect.Waiters after the readers were granted: the writer and the reader behind it stay queued; a hand-off must not grant readers queued behind a writer")
	e.noneReturned(out, "while two read leases were held and a writer queued before it: a hand-off must not grant readers queued behind a writer")

	for _, r := range readers {
		e.release(r)
	}
	w := e.recv(out, "the queued writer after the readers released")
	require.NoError(e.t, w.err, "the queued writer's AcquireWrite")
	require.Equal(e.t, 2, w.id, "the writer, queued before the last reader, must be granted first")
	assert.Greater(e.t, w.lease.Token(), max(readers[0].Token(), readers[1].Token()), "the writer's token above the readers' (I2)")
	assert.Equal(e.t, 1, e.inspect(e.b, name).Waiters, "the last reader stays queued while the writer holds")
	e.noneReturned(out, "while the write lease was held (I1)")
	e.release(w.lease)
	last := e.recv(out, "the last reader after the writer released")
	require.NoError(e.t, last.err, "the last reader's AcquireRead")
	assert.Greater(e.t, last.lease.Token(), w.lease.Token(), "the last reader's token (I2)")
	e.release(last.lease)
	e.requireFree(e.a, name, "after everyone released")
}

// testRWTTLExpiry (I3, I2): a TTL read lease that is not refreshed expires
// and a writer waiting on the other Locker gets the lock once the TTL ran
// out, the reader learning first; the same for a TTL write lease and a
// waiting reader.
func testRWTTLExpiry(e *env) {
	const ttl = 300 * time.Millisecond
	for _, c := range []struct {
		what        string
		holderWrite bool
	}{
		{"a TTL read lease, a writer waiting", false},
		{"a TTL write lease, a reader waiting", true},
	} {
		name := e.name("rw-ttl")
		hold, wait := e.rw(e.a).AcquireRead, e.rw(e.b).AcquireWrite
		if c.holderWrite {
			hold, wait = e.rw(e.a).AcquireWrite, e.rw(e.b).AcquireRead
		}
		stalls := watchStalls()
		start := time.Now()
		lease, err := hold(e.ctx(), name, lock.WithTTL(ttl))
		holder := e.checkRW(lease, err, name, c.what)
		next := expiryHandoff(e, holder, ttl, start, stalls, c.what, func(ctx context.Context) (lock.Lease, error) {
			return wait(ctx, name)
		})
		stalls.end()
		e.release(next)
		e.requireFree(e.a, name, c.what+": after the waiter released")
	}
}

// testRWClose: Close ends every read and write lease of the Locker and
// fails its queued calls with ErrClosed, the reader queued behind its own
// withdrawn writer included (a closing Locker is never granted); the other
// Lockers' waiters are granted what it held or held back, with larger
// tokens; later calls on the closed Locker fail with ErrClosed.
func testRWClose(e *env) {
	c := e.newLocker()
	n1, n2, n3 := e.name("rw-close-write"), e.name("rw-close-read"), e.name("rw-close-queued")
	write := e.tryWrite(c, n1)
	read := e.read(c, n2)
	lease, err := e.rw(c).AcquireRead(e.ctx(), n2, lock.WithTTL(time.Minute))
	ttlRead := e.checkRW(lease, err, n2, "AcquireRead with WithTTL(1m)")
	other := e.read(e.b, n3)

	ctx := e.ctx()
	out := make(chan acquired, 3)
	e.goRW(ctx, out, 0, e.b, n1, false) // a reader behind c's writer
	e.goRW(ctx, out, 1, e.b, n2, true)  // a writer behind c's readers
	e.waitWaiters(e.a, n1, 1)
	e.waitWaiters(e.a, n2, 1)
	own := make(chan acquired, 2)
	e.goRW(ctx, own, 10, c, n3, true) // c's writer behind other's reader
	e.waitWaiters(e.a, n3, 1)
	e.goRW(ctx, own, 11, c, n3, false) // c's reader behind its own writer
	e.waitWaiters(e.a, n3, 2)
	e.goRW(ctx, out, 2, e.a, n3, false) // a reader behind both
	e.waitWaiters(e.a, n3, 3)

	require.NoError(e.t, c.Close(), "Close")
	assertEnded(e, write, lock.ErrReleased, "write lease when its Locker's Close returns")
	assertEnded(e, read, lock.ErrReleased, "read lease when its Locker's Close returns")
	assertEnded(e, ttlRead, lock.ErrReleased, "TTL read lease when its Locker's Close returns")
	for range 2 {
		r := e.recv(own, "a queued call of the closed Locker")
		e.assertRejected(r.lease, r.err, lock.ErrClosed, "call %d: a queued call of a closing Locker must fail with ErrClosed, never be granted", r.id)
	}

	floor := map[int]uint64{0: write.Token(), 1: max(read.Token(), ttlRead.Token()), 2: other.Token()}
	var granted []lock.Lease
	for range 3 {
		r := e.recv(out, "a waiter of another Locker after Close")
		require.NoError(e.t, r.err, "waiter %d: what a closed Locker held or held back must go to the waiters (I4)", r.id)
		assert.Greater(e.t, r.lease.Token(), floor[r.id], "waiter %d's token (I2)", r.id)
		granted = append(granted, r.lease)
	}
	assertHeld(e, other, "the other Locker's read lease after Close")
	for _, name := range []string{n1, n2, n3} {
		assert.Zero(e.t, e.inspect(e.b, name).Waiters, "waiters of %q after Close and the grants", name)
	}

	rw := e.rw(c)
	lease, err = rw.AcquireRead(e.ctx(), n3)
	e.assertRejected(lease, err, lock.ErrClosed, "AcquireRead after Close")
	lease, err = rw.TryAcquireWrite(e.ctx(), e.name("rw-close-after"))
	e.assertRejected(lease, err, lock.ErrClosed, "TryAcquireWrite after Close")
	for _, l := range append(granted, other) {
		e.release(l)
	}
	for _, name := range []string{n1, n2, n3} {
		e.requireFree(e.b, name, "after everyone released")
	}
}

// testRWWriterToken (I2): a writer queued behind three readers, and a
// writer that comes after them, get tokens above every reader's.
func testRWWriterToken(e *env) {
	name := e.name("rw-token")
	readers := []lock.Lease{e.read(e.a, name), e.read(e.b, name), e.tryRead(e.a, name)}
	var top uint64
	for _, r := range readers {
		top = max(top, r.Token())
	}
	out := make(chan acquired, 1)
	e.goRW(e.ctx(), out, 0, e.b, name, true)
	e.waitWaiters(e.a, name, 1)
	for _, r := range readers {
		e.release(r)
	}
	w := e.recv(out, "the writer after the readers released")
	require.NoError(e.t, w.err, "the queued writer's AcquireWrite")
	assert.Greater(e.t, w.lease.Token(), top, "a writer's token must be above every earlier reader's (I2)")
	e.release(w.lease)

	r := e.read(e.a, name)
	e.release(r)
	second := e.tryWrite(e.b, name)
	assert.Greater(e.t, second.Token(), r.Token(), "a writer's token must be above every earlier reader's (I2)")
	e.release(second)
}

// testRWNoUpgrade: a holder of a read lease is not given the write lease
// of the same name: TryAcquireWrite answers ErrHeld, and AcquireWrite
// waits (until its ctx ends) or fails with ErrInvalidOption.
func testRWNoUpgrade(e *env) {
	name := e.name("rw-upgrade")
	r := e.read(e.a, name)
	w, err := e.rw(e.a).TryAcquireWrite(e.ctx(), name)
	e.assertRejected(w, err, lock.ErrHeld, "TryAcquireWrite by the holder of a read lease")
	ctx, cancel := context.WithTimeout(e.t.Context(), min(e.cfg.wait, time.Second))
	defer cancel()
	w, err = e.rw(e.a).AcquireWrite(ctx, name)
	if !errors.Is(err, lock.ErrInvalidOption) {
		e.assertRejected(w, err, context.DeadlineExceeded, "AcquireWrite by the holder of a read lease: no upgrade")
	}
	assert.NoError(e.t, r.Err(), "the reader's Err")
	assert.Zero(e.t, e.inspect(e.b, name).Waiters, "a withdrawn AcquireWrite leaves no waiter")
	e.release(r)
	e.requireFree(e.a, name, "after the reader released")
}

// testRWInvalidInput: bad names are ErrInvalidName, bad options
// ErrInvalidOption, and a name held as another type ErrInvalidOption
// naming both types, for every call, before anything is queued.
func testRWInvalidInput(e *env) {
	rw := e.rw(e.a)
	calls := []struct {
		what string
		fn   func(context.Context, string, ...lock.Option) (lock.Lease, error)
	}{
		{"AcquireRead", rw.AcquireRead}, {"TryAcquireRead", rw.TryAcquireRead},
		{"AcquireWrite", rw.AcquireWrite}, {"TryAcquireWrite", rw.TryAcquireWrite},
	}
	mutex := e.name("rw-on-mutex")
	held := e.acquire(e.b, mutex)
	for _, c := range calls {
		for _, bad := range []string{"", e.cfg.prefix + "a\nb", e.cfg.prefix + "\xff"} {
			lease, err := c.fn(e.rejectCtx(), bad)
			e.assertRejected(lease, err, lock.ErrInvalidName, "%s(%q)", c.what, bad)
		}
		lease, err := c.fn(e.rejectCtx(), e.name("rw-ttl"), lock.WithTTL(50*time.Millisecond))
		e.assertRejected(lease, err, lock.ErrInvalidOption, "%s with WithTTL(50ms)", c.what)
		lease, err = c.fn(e.rejectCtx(), mutex)
		e.assertRejected(lease, err, lock.ErrInvalidOption, "%s of a name held as a mutex", c.what)
		assertNamesTypes(e, err, mutex, "mutex", "read-write")
	}
	e.requireHeldBy(e.a, held, "after the read-write calls on the mutex")
	e.release(held)

	name := e.name("rw-typed")
	r := e.read(e.b, name)
	p, err := e.semaphores(e.a).AcquirePermit(e.rejectCtx(), name, 2)
	e.assertRejected(p, err, lock.ErrInvalidOption, "AcquirePermit of a name held as a read-write lock")
	assertNamesTypes(e, err, name, "read-write", "semaphore")
	lease, err := e.a.Acquire(e.rejectCtx(), name)
	e.assertRejected(lease, err, lock.ErrInvalidOption, "Acquire of a name held as a read-write lock")
	assertNamesTypes(e, err, name, "read-write", "mutex")
	assert.Zero(e.t, e.inspect(e.a, name).Waiters, "rejected calls must not queue")
	e.release(r)
}

// testDoReadWrite: lock.DoRead and lock.DoWrite run fn under the lease,
// with its token in fn's ctx, and release it however fn ends.
func testDoReadWrite(e *env) {
	name := e.name("do-rw")
	rw := e.rw(e.a)
	ran := 0
	err := lock.DoRead(e.ctx(), rw, name, func(ctx context.Context) error {
		ran++
		_, ok := lock.TokenFromContext(ctx)
		assert.True(e.t, ok, "TokenFromContext inside DoRead")
		e.release(e.tryRead(e.b, name)) // readers together
		w, err := e.rw(e.b).TryAcquireWrite(e.ctx(), name)
		e.assertRejected(w, err, lock.ErrHeld, "TryAcquireWrite inside DoRead")
		return nil
	})
	require.NoError(e.t, err, "DoRead")
	err = lock.DoWrite(e.ctx(), rw, name, func(ctx context.Context) error {
		ran++
		_, ok := lock.TokenFromContext(ctx)
		assert.True(e.t, ok, "TokenFromContext inside DoWrite")
		r, err := e.rw(e.b).TryAcquireRead(e.ctx(), name)
		e.assertRejected(r, err, lock.ErrHeld, "TryAcquireRead inside DoWrite")
		return nil
	})
	require.NoError(e.t, err, "DoWrite")
	assert.Equal(e.t, 2, ran, "fn runs")
	e.requireFree(e.b, name, "after DoRead and DoWrite returned")

	errFn := errors.New("locktest: fn failed")
	assert.ErrorIs(e.t, lock.DoRead(e.ctx(), rw, name, func(context.Context) error { return errFn }), errFn, "DoRead must return fn's error")
	assert.ErrorIs(e.t, lock.DoWrite(e.ctx(), rw, name, func(context.Context) error { return errFn }), errFn, "DoWrite must return fn's error")
	e.requireFree(e.b, name, "after fn failed")
}

// testRWTTLEach (I4): every TTL read lease of a name expires on its own
// TTL: two unrefreshed TTL read leases both end in the store, which then
// shows the name free.
func testRWTTLEach(e *env) {
	const ttl = 300 * time.Millisecond
	name := e.name("rw-ttl-each")
	for range 2 {
		lease, err := e.rw(e.a).AcquireRead(e.ctx(), name, lock.WithTTL(ttl))
		e.checkRW(lease, err, name, "AcquireRead")
	}
	e.waitFree(e.b, name, "after every TTL lease expired unrefreshed")
}
