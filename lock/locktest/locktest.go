package locktest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// Option configures Run.
type Option func(*config)

type config struct {
	fifo   bool
	prefix string
	// wait bounds every wait on the backend: each call's ctx, each wait for
	// a result or for an observable state. The suite's own tests shorten it
	// when they run it against deliberately broken backends.
	wait time.Duration
	// outage opens a store the outage subtests may cut; nil skips them.
	outage func(t *testing.T) OutageStore
	// listUnordered: List pages are not in byte order (ListUnordered).
	listUnordered bool
	// waiterIDsPerStore: see WaiterIDsPerStore.
	waiterIDsPerStore bool
	// observeEvery: see ObserveEvery.
	observeEvery bool
}

// maxPrefixLen leaves room in a 512-byte name for the suite's own suffixes.
const maxPrefixLen = 128

// FIFO declares that the backend serves the waiters of a name first come,
// first served: Acquire calls that Inspect has counted as queued are granted
// in the order in which they were counted. Run then checks the grant order.
// Without FIFO, Run only checks that every waiter is granted in turn.
func FIFO() Option {
	return func(c *config) { c.fifo = true }
}

// ListUnordered declares that the backend's List returns names in no
// particular order and may list a name more than once (Redis's SCAN); Run
// then checks that every held name is listed, without checking the order.
func ListUnordered() Option {
	return func(c *config) { c.listUnordered = true }
}

// WaiterIDsPerStore declares a Locker over two stores (adapters/migrate's
// Dual phase): it holds a name in both but waits in one at a time, and each
// store knows it by its own ID, so a waiter's Info.Queue Holder need not be
// the Holder the same Locker has once granted. Run then checks only that
// the waiters' Holders are set and distinct.
func WaiterIDsPerStore() Option {
	return func(c *config) { c.waiterIDsPerStore = true }
}

// ObserveEvery declares that the backend's Observe delivers every change
// of an election while its reader keeps up (lock.Elector's promise), as
// an embedded store's events or a stream of the store's own messages can.
// Run then requires every state of a sequence of changes made while the
// observer read nothing. Without it, Run requires the states delivered to
// be some of those, in the store's order, ending with the latest: what a
// store whose watches fire once and are read again (ZooKeeper) can give
// when changes come faster than a watch round trip.
func ObserveEvery() Option {
	return func(c *config) { c.observeEvery = true }
}

// NamePrefix makes every lock name the suite uses start with p. By default
// each Run picks a fresh random prefix, so that runs against a shared,
// long-lived store do not collide. A non-empty p must itself be a valid name
// of at most 128 bytes.
func NamePrefix(p string) Option {
	return func(c *config) { c.prefix = p }
}

// OutageStore is a store the outage subtests may make unreachable, as
// returned by the function given to Outage.
type OutageStore struct {
	// NewLocker returns a new client on this store, as Run's newLocker
	// does; nil means Run's newLocker (the outage store is the shared one).
	NewLocker func(t *testing.T) lock.Locker
	// Cut makes the store unreachable for every Locker NewLocker made (a
	// paused server, a majority of the replicas down): calls can no longer
	// commit, but the Lockers stay open. It returns once the cut is in
	// effect.
	Cut func()
	// Heal makes the store reachable again and returns once it serves.
	Heal func()
}

// Outage enables the outage subtests, which check the contract while the
// store is unreachable: that calls fail with lock.ErrNoQuorum (and the
// ctx's error if ctx ended), and that Release and Refresh return once the
// lease has ended whatever ctx they were given. Run calls open once per
// outage subtest, so a backend may start a fresh store for each (open
// registers its teardown with t.Cleanup) or return the shared one. Each
// outage subtest heals the store before it ends. Without Outage the outage
// subtests are skipped.
func Outage(open func(t *testing.T) OutageStore) Option {
	return func(c *config) { c.outage = open }
}

// Run runs the conformance suite against a backend, one subtest per
// property.
//
// newLocker must return a new client (with its own session) on the same
// store every time it is called, and register with t.Cleanup whatever it
// needs to tear that client down. Run calls it at least twice per subtest and
// uses two Lockers wherever a property involves more than one party. Run
// closes every Locker it obtains at the end of the subtest, so Close must be
// idempotent (as lock.Locker requires).
func Run(t *testing.T, newLocker func(t *testing.T) lock.Locker, opts ...Option) {
	t.Helper()
	cfg := config{prefix: randomPrefix(), wait: 10 * time.Second}
	for _, opt := range opts {
		require.NotNil(t, opt, "locktest: nil Option")
		opt(&cfg)
	}
	if cfg.prefix != "" {
		require.NoError(t, lock.ValidateName(cfg.prefix), "locktest: NamePrefix must be a valid lock name")
		require.LessOrEqual(t, len(cfg.prefix), maxPrefixLen, "locktest: NamePrefix is too long")
	}
	s := &suite{cfg: cfg, newLocker: newLocker}

	for _, st := range []struct {
		name   string
		fn     func(*env)
		outage bool // needs Outage
	}{
		{"InvalidInput", testInvalidInput, false},
		{"ValidNames", testValidNames, false},
		{"HeldState", testHeldState, false},
		{"Inspect", testInspect, false},
		{"TokensIncrease", testTokensIncrease, false},
		{"TryAcquireHeld", testTryAcquireHeld, false},
		{"TryAcquireRace", testTryAcquireRace, false},
		{"NotReentrant", testNotReentrant, false},
		{"MutualExclusion", testMutualExclusion, false},
		{"Handoff", testHandoff, false},
		{"FIFO", testFIFO, false},
		{"AcquireCanceled", testAcquireCanceled, false},
		{"AcquireDeadline", testAcquireDeadline, false},
		{"AcquireCancelRace", testAcquireCancelRace, false},
		{"ReleaseTwice", testReleaseTwice, false},
		{"RefreshAfterRelease", testRefreshAfterRelease, false},
		{"TTLExpiry", testTTLExpiry, false},
		{"RefreshExtendsTTL", testRefreshExtendsTTL, false},
		{"Close", testClose, false},
		{"Do", testDo, false},
		{"EndedLease", testEndedLease, false},
		{"InfoStory", testInfoStory, false},
		{"List", testList, false},
		{"Revoke", testRevoke, false},
		{"Adopt", testAdopt, false},
		{"FloorToken", testFloorToken, false},
		{"OutageNoQuorum", testOutageNoQuorum, true},
		{"OutageEndedLease", testOutageEndedLease, true},
		{"OutageLateRefresh", testOutageLateRefresh, true},
	} {
		t.Run(st.name, func(t *testing.T) {
			if !st.outage {
				st.fn(s.env(t))
				return
			}
			if cfg.outage == nil {
				t.Skip("no locktest.Outage option: the store cannot be made unreachable")
			}
			st.fn(s.outageEnv(t))
		})
	}
	s.group(t, "Election", "lock.Elector", probeElector, electionTests)
	s.group(t, "Semaphore", "lock.Semaphores", probeSemaphores, semaphoreTests)
	s.group(t, "ReadWrite", "lock.RWLockers", probeRWLockers, rwTests)
}

// subtest is one property of a group.
type subtest struct {
	name string
	fn   func(*env)
}

// group runs the subtests of one optional interface under one parent test
// (lock/DESIGN.md, "Checking them"). probe makes the group's first call:
// it reports whether the Locker implements the interface and the call's
// error. A Locker that does not implement it, or whose first call answers
// ErrUnsupported, skips the group with that reason: a backend cannot pass
// by omission, it has to say so.
func (s *suite) group(t *testing.T, name, iface string, probe func(*env) (bool, error), tests []subtest) (skipped bool) {
	t.Run(name, func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		e := s.env(t)
		implements, err := probe(e)
		if !implements {
			t.Skipf("%T does not implement %s", e.a, iface)
		}
		if errors.Is(err, lock.ErrUnsupported) {
			t.Skipf("the first call of %s: %v", iface, err)
		}
		require.NoError(t, err, "the first call of %s", iface)
		for _, st := range tests {
			t.Run(st.name, func(t *testing.T) { st.fn(s.env(t)) })
		}
	})
	return skipped
}

func randomPrefix() string {
	return "locktest-" + strings.ToLower(rand.Text()[:12]) + "-"
}

type suite struct {
	cfg       config
	newLocker func(t *testing.T) lock.Locker
	seq       atomic.Uint64
}

// env is the state of one subtest: two Lockers ("two clients") on the
// shared store and the goroutines the subtest started.
type env struct {
	t    *testing.T
	cfg  config
	s    *suite
	open func(t *testing.T) lock.Locker // the store's newLocker
	a, b lock.Locker
	wg   sync.WaitGroup
	// cut and heal are the outage controls; nil outside outage subtests.
	cut, heal func()
}

func (s *suite) env(t *testing.T) *env {
	e := &env{t: t, cfg: s.cfg, s: s, open: s.newLocker}
	// Cleanups run last-registered first: the Lockers are closed (which
	// unblocks any Acquire still waiting) before the goroutines are awaited.
	t.Cleanup(e.wg.Wait)
	e.a = e.newLocker()
	e.b = e.newLocker()
	return e
}

// outageEnv is env on the store Outage opens for this subtest, with its
// cut and heal. heal is idempotent, and runs before the Lockers are closed
// if the subtest did not heal the store itself (see outageDone).
func (s *suite) outageEnv(t *testing.T) *env {
	st := s.cfg.outage(t)
	require.NotNil(t, st.Cut, "locktest: OutageStore.Cut is nil")
	require.NotNil(t, st.Heal, "locktest: OutageStore.Heal is nil")
	e := &env{t: t, cfg: s.cfg, s: s, open: st.NewLocker}
	if e.open == nil {
		e.open = s.newLocker
	}
	var mu sync.Mutex
	down := false
	e.cut = func() {
		mu.Lock()
		defer mu.Unlock()
		if !down {
			st.Cut()
			down = true
		}
	}
	e.heal = func() {
		mu.Lock()
		defer mu.Unlock()
		if down {
			st.Heal()
			down = false
		}
	}
	t.Cleanup(e.wg.Wait)
	e.a = e.newLocker()
	e.b = e.newLocker()
	return e
}

// newLocker returns another client on the store; the suite closes it when
// the subtest ends.
func (e *env) newLocker() lock.Locker {
	e.t.Helper()
	l := e.open(e.t)
	require.NotNil(e.t, l, "newLocker returned nil")
	e.t.Cleanup(func() {
		if err := l.Close(); err != nil {
			e.t.Errorf("Close at the end of the subtest: %v", err)
		}
	})
	return l
}

// name returns a lock name no other subtest or run uses.
func (e *env) name(tag string) string {
	return e.cfg.prefix + tag + "-" + strconv.FormatUint(e.s.seq.Add(1), 10)
}

// ctx returns a context for one call, bounded by the suite's wait timeout
// and by the end of the subtest.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), e.cfg.wait)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) acquire(l lock.Locker, name string, opts ...lock.Option) lock.Lease {
	e.t.Helper()
	lease, err := l.Acquire(e.ctx(), name, opts...)
	require.NoError(e.t, err, "Acquire(%q)", name)
	require.NotNil(e.t, lease, "Acquire(%q) returned neither a lease nor an error", name)
	require.Equal(e.t, name, lease.Name(), "Lease.Name")
	return lease
}

func (e *env) tryAcquire(l lock.Locker, name string, opts ...lock.Option) lock.Lease {
	e.t.Helper()
	lease, err := l.TryAcquire(e.ctx(), name, opts...)
	require.NoError(e.t, err, "TryAcquire(%q)", name)
	require.NotNil(e.t, lease, "TryAcquire(%q) returned neither a lease nor an error", name)
	require.Equal(e.t, name, lease.Name(), "Lease.Name")
	return lease
}

func (e *env) inspect(l lock.Locker, name string) lock.Info {
	e.t.Helper()
	info, err := l.Inspect(e.ctx(), name)
	require.NoError(e.t, err, "Inspect(%q)", name)
	if len(info.Queue) == 0 {
		info.Queue = nil // an empty queue, however the backend spells it
	}
	return info
}

func (e *env) release(lease lock.Lease) {
	e.t.Helper()
	require.NoError(e.t, lease.Release(e.ctx()), "Release(%q)", lease.Name())
}

// requireFree asserts that name has no holder and no waiters.
func (e *env) requireFree(l lock.Locker, name string, msg string) {
	e.t.Helper()
	info := e.inspect(l, name)
	require.Falsef(e.t, info.Held, "%s: Inspect(%q) = %+v, want not held", msg, name, info)
	require.Zerof(e.t, info.Waiters, "%s: Inspect(%q) = %+v, want no waiters", msg, name, info)
}

// requireHeldBy asserts that lease is the current holder of its name.
func (e *env) requireHeldBy(l lock.Locker, lease lock.Lease, msg string) lock.Info {
	e.t.Helper()
	info := e.inspect(l, lease.Name())
	require.Truef(e.t, info.Held, "%s: Inspect(%q) = %+v, want held", msg, lease.Name(), info)
	require.Equalf(e.t, lease.Token(), info.Token, "%s: Inspect(%q).Token is not the holder's token", msg, lease.Name())
	return info
}

// assertRejected asserts that a call returning (lease, err) failed with
// want and no lease; a lease granted instead is released.
func (e *env) assertRejected(lease lock.Lease, err, want error, format string, args ...any) {
	e.t.Helper()
	assert.ErrorIsf(e.t, err, want, format, args...)
	assert.Nilf(e.t, lease, format+": returned a lease", args...)
	if err == nil && lease != nil {
		_ = lease.Release(e.ctx())
	}
}

func fmtInfo(info lock.Info, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	return fmt.Sprintf("%+v", info)
}

// eventually polls cond until it holds, failing the test after the wait
// timeout. cond also describes what it saw, for the failure message.
func (e *env) eventually(what string, cond func() (ok bool, seen string)) {
	e.t.Helper()
	deadline := time.Now().Add(e.cfg.wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting until %s; last seen: %s", e.cfg.wait, what, seen)
		}
		select {
		case <-tick.C:
		case <-e.t.Context().Done():
			e.t.Fatalf("test ended while waiting until %s", what)
		}
	}
}

// poll is one Inspect made while polling, with its own bounded ctx.
func (e *env) poll(l lock.Locker, name string) (lock.Info, error) {
	ctx, cancel := context.WithTimeout(e.t.Context(), e.cfg.wait)
	defer cancel()
	return l.Inspect(ctx, name)
}

// waitWaiters polls Inspect until name has exactly n queued Acquire calls.
func (e *env) waitWaiters(l lock.Locker, name string, n int) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("Inspect(%q).Waiters == %d", name, n), func() (bool, string) {
		info, err := e.poll(l, name)
		return err == nil && info.Waiters == n, fmtInfo(info, err)
	})
}

// cancelable returns a call context that the caller may cancel early.
func (e *env) cancelable() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(e.ctx())
	e.t.Cleanup(cancel)
	return ctx, cancel
}

// acquired is the outcome of an Acquire made in a goroutine.
type acquired struct {
	id    int
	lease lock.Lease
	err   error
}

// goAcquire calls l.Acquire in a goroutine and sends the outcome on out,
// which must have room for it.
func (e *env) goAcquire(ctx context.Context, out chan<- acquired, id int, l lock.Locker, name string, opts ...lock.Option) {
	e.wg.Go(func() {
		lease, err := l.Acquire(ctx, name, opts...)
		out <- acquired{id: id, lease: lease, err: err}
	})
}

// recv waits for the next outcome of an Acquire made in a goroutine.
func (e *env) recv(ch <-chan acquired, what string) acquired {
	e.t.Helper()
	return receive(e, ch, what, "an Acquire")
}

// waitClosed waits for ch to be closed.
func (e *env) waitClosed(ch <-chan struct{}, what string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-time.After(e.cfg.wait):
		e.t.Fatalf("timed out after %v waiting for %s", e.cfg.wait, what)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
