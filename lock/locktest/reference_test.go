package locktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// refStore is the suite's in-process reference backend, kept simple enough
// to be obviously correct: one mutex guards all state, each name has a
// holder and a FIFO queue of waiters, a release hands the name to the next
// waiter in the same critical section, TTL leases expire by time.AfterFunc,
// and tokens come from one counter. A refLocker is one client of the store.
//
// fault, empty in TestRun_reference, plants one known bug so that
// TestRun_detectsFaults can check that the suite catches it.
type refStore struct {
	fault fault

	mu     sync.Mutex
	last   uint64              // the last token granted, of any name
	names  map[string]*refName // names with a holder or waiters
	cut    bool                // unreachable (reference_outage_test.go)
	healed chan struct{}       // closed when a cut ends
	lapsed bool                // the sessions lapsed during the current cut
}

type refName struct {
	holder *refLease
	queue  []*refWaiter
	count  uint64 // tokens of this name; used only by faultTokenReset
}

type refWaiter struct {
	locker *refLocker
	key    string
	name   string
	opts   lock.Options
	queued bool           // in its name's queue
	res    chan refResult // receives one result, sent under mu, when queued turns false
}

type refResult struct {
	lease *refLease
	err   error
}

type refLocker struct {
	s       *refStore
	closed  bool // the fields of refLocker are guarded by s.mu
	leases  map[*refLease]bool
	waiters map[*refWaiter]bool
}

type refLease struct {
	locker   *refLocker
	key      string // the store's key for name
	name     string
	token    uint64
	owner    string
	ttl      time.Duration
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelCauseFunc
	deadline time.Time   // TTL leases; guarded by s.mu like the fields below
	timer    *time.Timer // TTL leases
	gen      uint64      // bumped when the timer is re-armed: a stale timer does nothing
	err      error       // nil while held
}

func newRefStore(f fault) *refStore {
	return &refStore{fault: f, names: make(map[string]*refName)}
}

// newLocker has the signature Run wants.
func (s *refStore) newLocker(t *testing.T) lock.Locker {
	l := &refLocker{s: s, leases: make(map[*refLease]bool), waiters: make(map[*refWaiter]bool)}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// The methods of refStore below are called with s.mu held.

func (s *refStore) key(name string) string {
	if s.fault == faultCaseFold {
		return strings.ToLower(name)
	}
	return name
}

// free reports whether l may take key at once.
func (s *refStore) free(key string, l *refLocker) bool {
	n := s.names[key]
	if n == nil {
		return true
	}
	if s.fault == faultReentrant && n.holder != nil && n.holder.locker == l {
		return true
	}
	return n.holder == nil && len(n.queue) == 0
}

func (s *refStore) grant(l *refLocker, key, name string, o lock.Options) *refLease {
	n := s.names[key]
	if n == nil {
		n = &refName{}
		s.names[key] = n
	}
	s.last++
	n.count++
	token := s.last
	if s.fault == faultTokenReset {
		token = n.count
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	lease := &refLease{
		locker: l, key: key, name: name, token: token, owner: o.Owner, ttl: o.TTL,
		done: make(chan struct{}), ctx: ctx, cancel: cancel,
	}
	n.holder = lease
	l.leases[lease] = true
	if lease.ttl > 0 {
		s.arm(lease)
	}
	return lease
}

// arm (re)starts the TTL of a lease.
func (s *refStore) arm(l *refLease) {
	ttl := l.ttl
	switch s.fault {
	case faultNoExpiry:
		return
	case faultEarlyExpiry:
		ttl /= 2
	}
	l.gen++
	gen := l.gen
	l.deadline = time.Now().Add(ttl)
	if l.timer != nil {
		l.timer.Stop()
	}
	l.timer = time.AfterFunc(ttl, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if l.gen == gen {
			s.end(l, lock.ErrExpired)
		}
	})
}

// expireDue ends the TTL lease on key if its deadline has passed and its
// timer has not fired yet, so that no call sees a lease past its deadline.
func (s *refStore) expireDue(key string, now time.Time) {
	if n := s.names[key]; n != nil && n.holder != nil {
		if h := n.holder; !h.deadline.IsZero() && !now.Before(h.deadline) {
			s.end(h, lock.ErrExpired)
		}
	}
}

// end ends a lease and hands its name to the next waiter. Done closes
// before the hand-off (I3).
func (s *refStore) end(l *refLease, err error) {
	if l.err != nil {
		return
	}
	l.err = err
	if l.timer != nil {
		l.timer.Stop()
	}
	if s.fault == faultLateHolder && errors.Is(err, lock.ErrExpired) {
		time.AfterFunc(l.ttl/2, func() {
			close(l.done)
			l.cancel(err)
		})
	} else {
		close(l.done)
		l.cancel(err)
	}
	delete(l.locker.leases, l)
	n := s.names[l.key]
	if n == nil { // only with faultReentrant
		return
	}
	if n.holder == l {
		n.holder = nil
	}
	if s.fault != faultLostWakeup || !errors.Is(err, lock.ErrReleased) {
		s.handoff(l.key, n)
	}
	s.gc(l.key, n)
}

func (s *refStore) handoff(key string, n *refName) {
	for n.holder == nil && len(n.queue) > 0 {
		w := n.queue[0]
		if s.fault == faultLIFO {
			w = n.queue[len(n.queue)-1]
		}
		s.dequeue(n, w)
		w.res <- refResult{lease: s.grant(w.locker, key, w.name, w.opts)}
		if s.fault == faultDoubleGrant && len(n.queue) > 0 {
			w2 := n.queue[0]
			s.dequeue(n, w2)
			w2.res <- refResult{lease: s.grant(w2.locker, key, w2.name, w2.opts)}
		}
	}
}

func (s *refStore) dequeue(n *refName, w *refWaiter) {
	n.queue = slices.DeleteFunc(n.queue, func(x *refWaiter) bool { return x == w })
	w.queued = false
	delete(w.locker.waiters, w)
}

func (s *refStore) gc(key string, n *refName) {
	if n.holder == nil && len(n.queue) == 0 {
		delete(s.names, key)
	}
}

// The methods of refLocker and refLease take s.mu.

func (l *refLocker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	s := l.s
	s.mu.Lock()
	if l.closed {
		s.mu.Unlock()
		return nil, lock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if err := s.reach(ctx, nil); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	key := s.key(name)
	s.expireDue(key, time.Now())
	if s.free(key, l) {
		lease := s.grant(l, key, name, o)
		s.mu.Unlock()
		return lease, nil
	}
	n := s.names[key]
	w := &refWaiter{locker: l, key: key, name: name, opts: o, queued: true, res: make(chan refResult, 1)}
	n.queue = append(n.queue, w)
	l.waiters[w] = true
	s.mu.Unlock()

	select {
	case r := <-w.res:
		return r.get()
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.queued {
		if s.fault != faultKeepCancelled {
			s.dequeue(n, w)
			s.gc(key, n)
		}
		if s.fault == faultQueuedNoQuorum {
			return nil, fmt.Errorf("%w: %w", lock.ErrNoQuorum, ctx.Err())
		}
		return nil, ctx.Err()
	}
	// A grant (or Close) raced the cancellation; its result is waiting.
	if r := <-w.res; r.lease != nil && s.fault != faultCancelRaceLeak {
		s.end(r.lease, lock.ErrReleased)
	}
	return nil, ctx.Err()
}

func (r refResult) get() (lock.Lease, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.lease, nil
}

func (l *refLocker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	o, optErr := lock.NewOptions(opts...)
	if optErr != nil && l.s.fault != faultLateValidation {
		return nil, optErr
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.closed {
		return nil, lock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.reach(ctx, nil); err != nil {
		return nil, err
	}
	key := s.key(name)
	s.expireDue(key, time.Now())
	if !s.free(key, l) {
		return nil, fmt.Errorf("%w: %q", lock.ErrHeld, name)
	}
	if optErr != nil {
		return nil, optErr
	}
	return s.grant(l, key, name, o), nil
}

func (l *refLocker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.closed {
		return lock.Info{}, lock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return lock.Info{}, err
	}
	if err := s.reach(ctx, nil); err != nil {
		return lock.Info{}, err
	}
	key, now := s.key(name), time.Now()
	s.expireDue(key, now)
	info := lock.Info{Name: name}
	n := s.names[key]
	if n == nil {
		return info, nil
	}
	info.Waiters = len(n.queue)
	if h := n.holder; h != nil {
		info.Held, info.Token, info.Owner = true, h.token, h.owner
		if s.fault == faultInspectNoOwner {
			info.Owner = ""
		}
		if !h.deadline.IsZero() {
			info.ExpiresIn = h.deadline.Sub(now)
		}
	}
	return info, nil
}

func (l *refLocker) Close() error {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for w := range l.waiters {
		n := s.names[w.key]
		s.dequeue(n, w)
		s.gc(w.key, n)
		w.res <- refResult{err: lock.ErrClosed}
	}
	if s.fault == faultCloseKeepsLeases {
		return nil
	}
	for lease := range l.leases {
		s.end(lease, lock.ErrReleased)
	}
	return nil
}
