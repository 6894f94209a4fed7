package zookeeper_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// Semaphores and read-write locks (DESIGN.md, "Semaphores and read-write
// locks"): the wake-up paths, the slot's order and record, the children's
// names, and Revoke and Adopt of a holder that is not the lowest child.

// patience bounds a wait for a grant that must come: a hang guard, not a
// measurement.
const patience = 30 * time.Second

// permitted is the outcome of an AcquirePermit made in a goroutine.
type permitted struct {
	permit lock.Permit
	err    error
}

func goPermit(ctx context.Context, l *zookeeper.Locker, name string, limit int, opts ...lock.Option) <-chan permitted {
	out := make(chan permitted, 1)
	go func() {
		p, err := l.AcquirePermit(ctx, name, limit, opts...)
		out <- permitted{p, err}
	}()
	return out
}

// recvPermit waits for a permit call's outcome, which must be a permit.
func recvPermit(t *testing.T, ch <-chan permitted, what string) lock.Permit {
	t.Helper()
	select {
	case r := <-ch:
		require.NoError(t, r.err, what)
		return r.permit
	case <-time.After(patience):
		t.Fatalf("%s: no grant within %v", what, patience)
		return nil
	}
}

// requireWaiting asserts that a permit call has not returned.
func requireWaiting(t *testing.T, ch <-chan permitted, what string) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil {
			_ = r.permit.Release(context.Background())
		}
		t.Fatalf("%s returned (error %v) while it must wait", what, r.err)
	default:
	}
}

// blocker is a hook that blocks its first call until opened, and says when
// that call has come.
type blocker struct {
	once    sync.Once
	reached chan struct{}
	open    chan struct{}
}

func newBlocker() *blocker {
	return &blocker{reached: make(chan struct{}), open: make(chan struct{})}
}

func (b *blocker) hook() {
	b.once.Do(func() {
		close(b.reached)
		<-b.open
	})
}

func (b *blocker) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-b.reached:
	case <-time.After(patience):
		t.Fatalf("the hook was not reached: %s", what)
	}
}

// testSemaphoreWakesOnAnyRelease: the first waiter behind limit holders is
// granted when any of them releases, the lowest, a middle one or the
// newest, and gets the released slot. (A first waiter that watched only
// its predecessor, the newest holder, would sleep through the others'
// releases.) A second waiter is woken by the first one's grant.
func testSemaphoreWakesOnAnyRelease(t *testing.T, servers []string) {
	const name, limit = "sem-wake", 3
	a, b := newLocker(t, servers, stableTimeout), newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)
	var held []lock.Permit
	for range limit {
		p, err := a.AcquirePermit(ctx, name, limit)
		require.NoError(t, err)
		held = append(held, p)
	}
	for _, i := range []int{1, 0, 2} { // a middle holder, then the lowest, then the newest
		waiter := goPermit(ctx, b, name, limit)
		waitWaiters(t, a, name, 1)
		requireWaiting(t, waiter, "a waiter behind limit holders")
		gone := held[i]
		require.NoError(t, gone.Release(ctx))
		p := recvPermit(t, waiter, fmt.Sprintf("the waiter after the release of holder %d", i))
		assert.Equal(t, gone.Slot(), p.Slot(), "the released slot is the only free one")
		assert.Greater(t, p.Token(), gone.Token())
		held[i] = p
	}

	// Two waiters; two releases: the second waiter watches the first,
	// whose grant writes its slot.
	w1 := goPermit(ctx, b, name, limit)
	waitWaiters(t, a, name, 1)
	w2 := goPermit(ctx, a, name, limit)
	waitWaiters(t, a, name, 2)
	require.NoError(t, held[0].Release(ctx))
	require.NoError(t, held[2].Release(ctx))
	p1, p2 := recvPermit(t, w1, "the first waiter"), recvPermit(t, w2, "the second waiter")
	assert.ElementsMatch(t, []int{held[0].Slot(), held[2].Slot()}, []int{p1.Slot(), p2.Slot()}, "the two released slots")
	for _, p := range []lock.Permit{held[1], p1, p2} {
		require.NoError(t, p.Release(ctx))
	}
	assert.Empty(t, children(t, a, name))
}

// testSemaphoreSlotOrder (the slot race): a permit claim admitted while
// a claim ahead of it, also admitted, has not written its slot yet waits
// for that write, and then takes another slot. The first claim is held
// between choosing its slot and writing it; the second must not be
// granted meanwhile (it would take the same free slot, 0), and gets slot
// 1 once the first is written. Its watch on the first claim is what wakes
// it, and the first claim's record carries its slot.
func testSemaphoreSlotOrder(t *testing.T, servers []string) {
	const name, limit = "sem-slot-order", 2
	for _, opts := range [][]lock.Option{nil, {lock.WithTTL(time.Minute)}} {
		a, b := newLocker(t, servers, stableTimeout), newLocker(t, servers, stableTimeout)
		ctx := ctxFor(t, 2*time.Minute)
		hold := newBlocker()
		zookeeper.SetClaimHooks(a, nil, hold.hook)
		first := goPermit(ctx, a, name, limit, opts...)
		hold.await(t, "the first claim chose its slot")
		second := goPermit(ctx, b, name, limit, opts...)
		eventually(t, patience, "the second claim watches the first", func() bool {
			return watchChannels(t, zookeeper.Conn(b)) > 0 || len(second) > 0
		})
		requireWaiting(t, second, "a permit claim behind one that has not written its slot")
		close(hold.open)
		p1, p2 := recvPermit(t, first, "the first claim"), recvPermit(t, second, "the second claim")
		assert.Equal(t, 0, p1.Slot(), "the first claim's slot")
		assert.Equal(t, 1, p2.Slot(), "the second claim's slot: not the first's")
		for i, p := range []lock.Permit{p1, p2} {
			slot, ok, err := zookeeper.PermitSlotInRecord(ctx, []*zookeeper.Locker{a, b}[i], p)
			require.NoError(t, err)
			assert.True(t, ok, "permit %d's record has a slot", i)
			assert.Equal(t, p.Slot(), slot, "permit %d's record", i)
			require.NoError(t, p.Release(ctx))
		}
	}
}

// testSemaphoreMissedRelease: a waiter that lists, and arms its watch
// only after the change it waits for, must not sleep through it. The
// waiter is held between its listing and the arming while (1) a holder
// releases, for the first waiter, which arms a children watch, and (2)
// its predecessor is granted, for the second waiter, which arms a data
// watch on the predecessor and must then find it granted and wait for
// the holders instead.
func testSemaphoreMissedRelease(t *testing.T, servers []string) {
	const limit = 2
	ctx := ctxFor(t, 2*time.Minute)
	a := newLocker(t, servers, stableTimeout)
	holders := func(name string) []lock.Permit {
		var held []lock.Permit
		for range limit {
			p, err := a.AcquirePermit(ctx, name, limit)
			require.NoError(t, err)
			held = append(held, p)
		}
		return held
	}

	t.Run("FirstWaiter", func(t *testing.T) {
		const name = "sem-missed-first"
		held := holders(name)
		b := newLocker(t, servers, stableTimeout)
		hold := newBlocker()
		zookeeper.SetClaimHooks(b, hold.hook, nil)
		waiter := goPermit(ctx, b, name, limit)
		hold.await(t, "the waiter listed")
		require.NoError(t, held[1].Release(ctx))
		close(hold.open)
		p := recvPermit(t, waiter, "the waiter, after a release made before it armed its watch")
		assert.Equal(t, held[1].Slot(), p.Slot())
		require.NoError(t, p.Release(ctx))
		require.NoError(t, held[0].Release(ctx))
	})

	t.Run("SecondWaiter", func(t *testing.T) {
		const name = "sem-missed-second"
		held := holders(name)
		// A TTL permit: its grant is its last write (a session permit that
		// waited has its grant time written by the prober soon after, which
		// would wake a watch armed too late).
		first := goPermit(ctx, a, name, limit, lock.WithTTL(time.Minute))
		waitWaiters(t, a, name, 1)
		b := newLocker(t, servers, stableTimeout)
		hold := newBlocker()
		zookeeper.SetClaimHooks(b, hold.hook, nil)
		second := goPermit(ctx, b, name, limit)
		hold.await(t, "the second waiter listed")
		require.NoError(t, held[0].Release(ctx))
		p1 := recvPermit(t, first, "the first waiter")
		close(hold.open)
		waitWaiters(t, a, name, 1)
		requireWaiting(t, second, "the second waiter behind two holders")
		require.NoError(t, held[1].Release(ctx))
		p2 := recvPermit(t, second, "the second waiter, after a holder released")
		assert.Equal(t, held[1].Slot(), p2.Slot())
		require.NoError(t, p1.Release(ctx))
		require.NoError(t, p2.Release(ctx))
	})
}

var (
	permitChild = regexp.MustCompile(`^_c_S3_[0-9a-f]{29}-lock-[0-9]{10}$`)
	readerChild = regexp.MustCompile(`^_c_Rr_[0-9a-f]{29}-lock-[0-9]{10}$`)
	writerChild = regexp.MustCompile(`^_c_Rw_[0-9a-f]{29}-lock-[0-9]{10}$`)
)

// testPermitRecord: the children's names carry their type (and an older
// version sees them as claims); a permit's record is format 3 with its
// slot, which a TTL permit's Refresh keeps; a read or write lease's
// record is format 2.
func testPermitRecord(t *testing.T, servers []string) {
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	const name = "permit-record"
	record := func(kid string) zookeeper.Record {
		data, _, err := zookeeper.Conn(l).Get(zookeeper.Dir(l, name) + "/" + kid)
		require.NoError(t, err)
		rec, err := zookeeper.DecodeRecord(data)
		require.NoError(t, err)
		return rec
	}
	s0, err := l.AcquirePermit(ctx, name, 3)
	require.NoError(t, err)
	s1, err := l.TryAcquirePermit(ctx, name, 3, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	require.NoError(t, s1.Refresh(ctx))
	kids := bySequence(children(t, l, name))
	require.Len(t, kids, 2)
	for i, kid := range kids {
		assert.Regexp(t, permitChild, kid)
		assert.Regexp(t, olderGrammar, kid, "older versions see a permit's child as a claim")
		rec := record(kid)
		assert.Equal(t, 3, rec.Format, "child %d: a permit's record", i)
		assert.Equal(t, []lock.Permit{s0, s1}[i].Slot(), rec.Slot, "child %d: the slot in the record (after a Refresh for the TTL permit)", i)
	}
	assert.NotEqual(t, s0.Slot(), s1.Slot())
	require.NoError(t, s0.Release(ctx))
	require.NoError(t, s1.Release(ctx))

	r, err := l.AcquireRead(ctx, name)
	require.NoError(t, err)
	w := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	go func() { _, err := l.AcquireWrite(wctx, name); w <- err }()
	waitWaiters(t, l, name, 1)
	kids = bySequence(children(t, l, name))
	require.Len(t, kids, 2)
	assert.Regexp(t, readerChild, kids[0])
	assert.Regexp(t, writerChild, kids[1])
	for _, kid := range kids {
		assert.Regexp(t, olderGrammar, kid)
		assert.Equal(t, 2, record(kid).Format, "a read-write lock's record has no slot")
	}
	cancel()
	require.ErrorIs(t, <-w, context.Canceled, "a reader's AcquireWrite waits behind its own read lease")
	require.NoError(t, r.Release(ctx))
	assert.Empty(t, children(t, l, name))
}

// bySequence orders claim names by their sequence suffix (a listing is in
// no particular order).
func bySequence(kids []string) []string {
	seq := func(k string) string { return k[len(k)-10:] }
	slices.SortFunc(kids, func(a, b string) int { return strings.Compare(seq(a), seq(b)) })
	return kids
}

// testRevokeAdoptAnyHolder: Revoke and Adopt find a lease by token among
// all the holders, not only the lowest child: a permit behind another
// and a reader behind another. An adopted permit is a Permit on its slot.
func testRevokeAdoptAnyHolder(t *testing.T, servers []string) {
	a, b := newLocker(t, servers, stableTimeout), newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)

	const sem = "any-holder-sem"
	low, err := a.AcquirePermit(ctx, sem, 3)
	require.NoError(t, err)
	ttl, err := a.AcquirePermit(ctx, sem, 3, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	adopted, err := b.Adopt(ctx, sem, ttl.Token())
	require.NoError(t, err, "Adopt of the second permit")
	p, ok := adopted.(lock.Permit)
	require.Truef(t, ok, "Adopt of a permit returned a %T", adopted)
	assert.Equal(t, ttl.Slot(), p.Slot(), "the adopted permit's slot")
	assert.Equal(t, ttl.Token(), p.Token())
	select {
	case <-ttl.Done():
	case <-time.After(patience):
		t.Fatal("the adopted permit's old holder did not learn")
	}
	assert.ErrorIs(t, ttl.Err(), lock.ErrAdopted)
	require.NoError(t, b.Revoke(ctx, sem, p.Token()), "Revoke of the adopted permit")
	assert.ErrorIs(t, p.Err(), lock.ErrRevoked)
	require.ErrorIs(t, a.Revoke(ctx, sem, p.Token()), lock.ErrNotHeld, "a revoked permit is gone")
	require.NoError(t, low.Release(ctx))

	const rw = "any-holder-rw"
	r0, err := a.AcquireRead(ctx, rw)
	require.NoError(t, err)
	r1, err := a.AcquireRead(ctx, rw)
	require.NoError(t, err)
	require.NoError(t, b.Revoke(ctx, rw, r1.Token()), "Revoke of the second reader")
	select {
	case <-r1.Done():
	case <-time.After(patience):
		t.Fatal("the revoked reader did not learn")
	}
	assert.ErrorIs(t, r1.Err(), lock.ErrRevoked)
	assert.NoError(t, r0.Err(), "the other reader")
	require.NoError(t, r0.Release(ctx))
	assert.Empty(t, children(t, a, rw))
	assert.Empty(t, children(t, a, sem))
}

// testPermitWithdrawn: a permit call whose ctx ends while it waits, as the
// first waiter (a children watch) or behind it (a data watch), session or
// TTL, returns ctx's error and leaves no child; a limit other than the one
// in force, from a call behind the holders, leaves none either.
func testPermitWithdrawn(t *testing.T, servers []string) {
	const name, limit = "permit-withdrawn", 2
	l := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	var held []lock.Permit
	for range limit {
		p, err := l.AcquirePermit(ctx, name, limit)
		require.NoError(t, err)
		held = append(held, p)
	}
	wctx, cancel := context.WithCancel(ctx)
	first := goPermit(wctx, l, name, limit)
	waitWaiters(t, l, name, 1)
	second := goPermit(wctx, l, name, limit, lock.WithTTL(time.Minute))
	waitWaiters(t, l, name, 2)
	cancel()
	for _, ch := range []<-chan permitted{first, second} {
		select {
		case r := <-ch:
			require.ErrorIs(t, r.err, context.Canceled)
		case <-time.After(patience):
			t.Fatal("a cancelled permit call did not return")
		}
	}
	assert.Len(t, children(t, l, name), limit, "the holders' children only")

	_, err := l.AcquirePermit(ctx, name, limit+1)
	require.ErrorIs(t, err, lock.ErrInvalidOption)
	assert.Contains(t, err.Error(), "lives as a semaphore of limit 2, asked as a semaphore of limit 3")
	assert.Len(t, children(t, l, name), limit, "a refused call leaves no child")
	for _, p := range held {
		require.NoError(t, p.Release(ctx))
	}
	assert.Empty(t, children(t, l, name))
}

// testSemaphoreHandOffReads: the first waiter behind limit holders reads
// their slots while it waits, so the hand-off that admits it reads no
// record (DESIGN.md, "The slot": the cost of a hand-off). Counted with
// the Locker's reads of records for slots.
func testSemaphoreHandOffReads(t *testing.T, servers []string) {
	const name, limit = "sem-hand-off-reads", 4
	a, b := newLocker(t, servers, stableTimeout), newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, time.Minute)
	var held []lock.Permit
	for range limit {
		p, err := a.AcquirePermit(ctx, name, limit)
		require.NoError(t, err)
		held = append(held, p)
	}
	waiter := goPermit(ctx, b, name, limit)
	eventually(t, patience, "the first waiter watches the holders", func() bool {
		return watchChannels(t, zookeeper.Conn(b)) > 0 || len(waiter) > 0
	})
	requireWaiting(t, waiter, "a waiter behind limit holders")
	before := zookeeper.SlotReads(b)
	assert.Equal(t, int64(limit), before, "the first waiter read each holder's slot once before it waited")
	require.NoError(t, held[2].Release(ctx))
	p := recvPermit(t, waiter, "the first waiter")
	assert.Equal(t, held[2].Slot(), p.Slot())
	assert.Equal(t, before, zookeeper.SlotReads(b), "the hand-off read no record")
	for _, h := range append(held[:2:2], held[3], p) {
		require.NoError(t, h.Release(ctx))
	}
	assert.Empty(t, children(t, a, name))
}

// testInspectTypes: Inspect reports the type (and a semaphore's limit),
// every holder in token order with its slot, mode or value, and each
// waiter's mode; a mutex has no Holders, a free name no type.
func testInspectTypes(t *testing.T, servers []string) {
	a := startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: stableTimeout, Node: "node-a"})
	b := newLocker(t, servers, stableTimeout)
	ctx := ctxFor(t, 2*time.Minute)

	const sem = "inspect-sem"
	p0, err := a.AcquirePermit(ctx, sem, 3, lock.WithOwner("p0"))
	require.NoError(t, err)
	p1, err := b.AcquirePermit(ctx, sem, 3, lock.WithOwner("p1"), lock.WithTTL(time.Minute))
	require.NoError(t, err)
	p2, err := a.AcquirePermit(ctx, sem, 3)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	waiter := goPermit(wctx, b, sem, 3, lock.WithOwner("w"))
	waitWaiters(t, a, sem, 1)
	info := inspect(t, a, sem)
	assert.Equal(t, lock.TypeSemaphore, info.Type)
	assert.Equal(t, 3, info.Limit)
	require.Len(t, info.Holders, 3)
	for i, p := range []lock.Permit{p0, p1, p2} {
		h := info.Holders[i]
		assert.Equal(t, p.Token(), h.Token, "holder %d", i)
		assert.Equal(t, p.Slot(), h.Slot, "holder %d", i)
		assert.Equal(t, lock.ModeNone, h.Mode, "holder %d", i)
		assert.Empty(t, h.Value, "holder %d", i)
	}
	assert.Equal(t, []string{"p0", "p1", ""}, []string{info.Holders[0].Owner, info.Holders[1].Owner, info.Holders[2].Owner})
	assert.Equal(t, zookeeper.HolderID(b), info.Holders[1].Holder)
	assert.Equal(t, lock.KindTTL, info.Holders[1].Kind)
	assert.Positive(t, info.Holders[1].ExpiresIn)
	assert.Equal(t, lock.KindSession, info.Holders[0].Kind)
	assert.Zero(t, info.Holders[0].ExpiresIn)
	assert.Equal(t, "node-a", info.Holders[0].Node)
	assert.Equal(t, info.Holders[0].Token, info.Token, "the top-level fields are the first holder's")
	assert.Equal(t, info.Holders[0].Holder, info.Holder)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, "w", info.Queue[0].Owner)
	assert.Equal(t, lock.ModeNone, info.Queue[0].Mode)
	cancel()
	r := <-waiter
	require.ErrorIs(t, r.err, context.Canceled)
	for _, p := range []lock.Permit{p0, p1, p2} {
		require.NoError(t, p.Release(ctx))
	}

	const rw = "inspect-rw"
	r0, err := a.AcquireRead(ctx, rw)
	require.NoError(t, err)
	r1, err := b.AcquireRead(ctx, rw)
	require.NoError(t, err)
	wctx, cancel = context.WithCancel(ctx)
	writer := make(chan error, 1)
	go func() { _, err := a.AcquireWrite(wctx, rw); writer <- err }()
	waitWaiters(t, a, rw, 1)
	reader := make(chan error, 1)
	go func() { _, err := b.AcquireRead(wctx, rw); reader <- err }()
	waitWaiters(t, a, rw, 2)
	info = inspect(t, a, rw)
	assert.Equal(t, lock.TypeReadWrite, info.Type)
	assert.Zero(t, info.Limit)
	require.Len(t, info.Holders, 2)
	for i, r := range []lock.Lease{r0, r1} {
		assert.Equal(t, r.Token(), info.Holders[i].Token, "reader %d", i)
		assert.Equal(t, lock.ModeRead, info.Holders[i].Mode, "reader %d", i)
	}
	require.Len(t, info.Queue, 2)
	assert.Equal(t, []lock.Mode{lock.ModeWrite, lock.ModeRead}, []lock.Mode{info.Queue[0].Mode, info.Queue[1].Mode})
	cancel()
	require.ErrorIs(t, <-writer, context.Canceled)
	require.ErrorIs(t, <-reader, context.Canceled)
	require.NoError(t, r0.Release(ctx))
	require.NoError(t, r1.Release(ctx))
	w, err := b.AcquireWrite(ctx, rw, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	info = inspect(t, a, rw)
	assert.Equal(t, lock.TypeReadWrite, info.Type)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, w.Token(), info.Holders[0].Token)
	assert.Equal(t, lock.ModeWrite, info.Holders[0].Mode)
	assert.Equal(t, lock.KindTTL, info.Holders[0].Kind)
	require.NoError(t, w.Release(ctx))

	const election = "inspect-election"
	term, err := a.Campaign(ctx, election, "leader-value")
	require.NoError(t, err)
	info = inspect(t, b, election)
	assert.Equal(t, lock.TypeElection, info.Type)
	require.Len(t, info.Holders, 1)
	assert.Equal(t, term.Token(), info.Holders[0].Token)
	assert.Equal(t, "leader-value", info.Holders[0].Value)
	assert.Equal(t, lock.ModeNone, info.Holders[0].Mode)
	require.NoError(t, term.Release(ctx))

	const mutex = "inspect-mutex"
	m, err := a.Acquire(ctx, mutex)
	require.NoError(t, err)
	info = inspect(t, b, mutex)
	assert.Equal(t, lock.TypeMutex, info.Type)
	assert.Zero(t, info.Limit)
	assert.Nil(t, info.Holders, "a mutex's one lease is the top-level fields")
	assert.Equal(t, m.Token(), info.Token)
	require.NoError(t, m.Release(ctx))
	assert.Equal(t, lock.Info{Name: mutex}, inspect(t, b, mutex), "a free name has no type")
}
