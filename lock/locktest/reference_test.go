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

	mu      sync.Mutex
	last    uint64              // the last token granted, of any name
	lockers int                 // Lockers made, for their IDs
	names   map[string]*refName // names with a holder or waiters
	// multi holds the names held or queued as elections, semaphores or
	// read-write locks, observers the elections' observers by key
	// (reference_multi_test.go).
	multi     map[string]*refMulti
	observers map[string][]*refObserver
	cut       bool          // unreachable (reference_outage_test.go)
	healed    chan struct{} // closed when a cut ends
	lapsed    bool          // the sessions lapsed during the current cut
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
	mode   string         // "" for a mutex; else reference_multi_test.go's
	req    refRequest     // the call of a multi-holder waiter
	since  time.Time      // when it queued
	queued bool           // in its name's queue
	res    chan refResult // receives one result, sent under mu, when queued turns false
}

type refResult struct {
	lease *refLease
	err   error
}

type refLocker struct {
	s         *refStore
	id        string // Info.Holder of its leases and waiters
	closed    bool   // the fields of refLocker are guarded by s.mu
	leases    map[*refLease]bool
	waiters   map[*refWaiter]bool
	observers map[*refObserver]bool
}

type refLease struct {
	locker   *refLocker
	key      string // the store's key for name
	name     string
	token    uint64
	owner    string
	ttl      time.Duration
	granted  time.Time
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelCauseFunc
	deadline time.Time   // TTL leases; guarded by s.mu like the fields below
	timer    *time.Timer // TTL leases
	gen      uint64      // bumped when the timer is re-armed: a stale timer does nothing
	err      error       // nil while held
	mode     string      // "" for a mutex; else reference_multi_test.go's
	slot     int         // a permit's
	value    string      // a term's; guarded by s.mu
}

func newRefStore(f fault) *refStore {
	return &refStore{fault: f, names: make(map[string]*refName), multi: make(map[string]*refMulti), observers: make(map[string][]*refObserver)}
}

// newLocker has the signature Run wants.
func (s *refStore) newLocker(t *testing.T) lock.Locker {
	s.mu.Lock()
	s.lockers++
	id := fmt.Sprintf("ref-%d", s.lockers)
	s.mu.Unlock()
	l := &refLocker{s: s, id: id, leases: make(map[*refLease]bool), waiters: make(map[*refWaiter]bool), observers: make(map[*refObserver]bool)}
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
	lease := s.newLease(l, key, name, token, o, "")
	n.holder = lease
	return lease
}

// newLease makes a lease of l, of mode ("" for a mutex), and starts its
// TTL.
func (s *refStore) newLease(l *refLocker, key, name string, token uint64, o lock.Options, mode string) *refLease {
	ctx, cancel := context.WithCancelCause(context.Background())
	lease := &refLease{
		locker: l, key: key, name: name, token: token, owner: o.Owner, ttl: o.TTL,
		granted: time.Now(), done: make(chan struct{}), ctx: ctx, cancel: cancel, mode: mode,
	}
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
	case faultMultiNoExpiry:
		if l.mode == modePermit || l.mode == modeRead || l.mode == modeWrite {
			return
		}
	case faultTTLPerName:
		if m := s.multi[l.key]; m != nil { // one timer per name: arming one stops the others'
			for _, h := range m.holders {
				if h != l && h.timer != nil {
					h.timer.Stop()
					h.deadline = time.Time{}
				}
			}
		}
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
	s.expireDueMulti(key, now)
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
	if late := s.lateEnd(l, err); late > 0 {
		time.AfterFunc(late, func() {
			close(l.done)
			l.cancel(err)
		})
	} else {
		close(l.done)
		l.cancel(err)
	}
	delete(l.locker.leases, l)
	if l.mode != "" {
		s.endMulti(l)
		return
	}
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

// lateEnd is how long after the hand-off the faults that make a holder
// learn late close its Done; 0 without them.
func (s *refStore) lateEnd(l *refLease, err error) time.Duration {
	switch {
	case s.fault == faultLateHolder && errors.Is(err, lock.ErrExpired):
		return l.ttl / 2
	case s.fault == faultRevokeGrantsFirst && errors.Is(err, lock.ErrRevoked):
		return 200 * time.Millisecond
	case s.fault == faultLateResign && l.mode == modeTerm:
		return 200 * time.Millisecond
	case s.fault == faultLateMulti && (l.mode == modePermit || l.mode == modeRead || l.mode == modeWrite):
		return 200 * time.Millisecond
	}
	return 0
}

// retire ends a lease object without touching its name's state: another
// lease object took its place (Adopt).
func (s *refStore) retire(l *refLease, err error) {
	l.err = err
	if l.timer != nil {
		l.timer.Stop()
	}
	l.gen++ // a timer that already fired does nothing
	close(l.done)
	l.cancel(err)
	delete(l.locker.leases, l)
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
	if err := s.mismatch(key, name, typeMutex, 0); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if s.free(key, l) {
		lease := s.grant(l, key, name, o)
		s.mu.Unlock()
		return lease, nil
	}
	n := s.names[key]
	w := &refWaiter{locker: l, key: key, name: name, opts: o, since: time.Now(), queued: true, res: make(chan refResult, 1)}
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
	if err := s.mismatch(key, name, typeMutex, 0); err != nil {
		return nil, err
	}
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
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return lock.Info{}, err
	}
	key, now := s.key(name), time.Now()
	s.expireDue(key, now)
	return s.info(name, key, now, o.QueueLimit), nil
}

// open is the common start of the calls below: the Locker is open, ctx
// has not ended and the store is reachable.
func (l *refLocker) open(ctx context.Context) error {
	if l.closed {
		return lock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.s.reach(ctx, nil)
}

func (s *refStore) info(name, key string, now time.Time, queueLimit int) lock.Info {
	info := lock.Info{Name: name}
	if m := s.multi[key]; m != nil {
		return s.infoMulti(info, m, now, queueLimit)
	}
	n := s.names[key]
	if n == nil {
		return info
	}
	info.Waiters = len(n.queue)
	for _, w := range n.queue[:min(queueLimit, len(n.queue))] {
		info.Queue = append(info.Queue, lock.Waiter{Holder: w.locker.id, Node: "ref", Owner: w.opts.Owner, Waited: now.Sub(w.since)})
	}
	if s.fault == faultQueueReversed {
		slices.Reverse(info.Queue)
	}
	if h := n.holder; h != nil {
		info.Held, info.Token, info.Owner = true, h.token, h.owner
		info.Kind, info.Since, info.Holder, info.Node = lock.KindSession, now.Sub(h.granted), h.locker.id, "ref"
		if s.fault == faultInspectNoOwner {
			info.Owner = ""
		}
		if !h.deadline.IsZero() {
			info.Kind, info.ExpiresIn = lock.KindTTL, h.deadline.Sub(now)
		}
	}
	return info
}

// List implements lock.Lister; the cursor is "ref:" and the last name.
func (l *refLocker) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	o, err := lock.NewListOptions(prefix, opts...)
	if err != nil {
		return lock.Page{}, err
	}
	if s := l.s; s.fault == faultListAll && len(prefix) > 1 {
		prefix = prefix[:len(prefix)-1] // matches more than it should
	}
	after, ok := strings.CutPrefix(o.Cursor, "ref:")
	if o.Cursor != "" && (!ok || !strings.HasPrefix(after, prefix) || lock.ValidateName(after) != nil) {
		return lock.Page{}, fmt.Errorf("%w: cursor %q", lock.ErrInvalidOption, o.Cursor)
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return lock.Page{}, err
	}
	now := time.Now()
	var names []string
	for key, n := range s.names {
		s.expireDue(key, now)
		if h := n.holder; h != nil && strings.HasPrefix(h.name, prefix) && h.name > after {
			names = append(names, h.name)
		}
	}
	slices.Sort(names)
	var page lock.Page
	for _, name := range names[:min(o.Limit, len(names))] {
		page.Locks = append(page.Locks, s.info(name, s.key(name), now, 0))
	}
	if len(names) > o.Limit {
		last := names[o.Limit-1]
		if s.fault == faultListSkips {
			last = names[o.Limit]
		}
		page.Next = "ref:" + last
	}
	return page, nil
}

// Revoke implements lock.Revoker: the holder learns in the same critical
// section that hands the name on, before the hand-off (I3).
func (l *refLocker) Revoke(ctx context.Context, name string, token uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateToken(token); err != nil {
		return err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return err
	}
	key := s.key(name)
	s.expireDue(key, time.Now())
	n := s.names[key]
	if n == nil || n.holder == nil || n.holder.token != token {
		return fmt.Errorf("%w: %q has no lease with token %d", lock.ErrNotHeld, name, token)
	}
	if s.fault == faultRevokeReusesToken {
		s.last--
	}
	s.end(n.holder, lock.ErrRevoked)
	return nil
}

// Adopt implements lock.Adopter: a new refLease of l takes the holder's
// place with its token, owner and TTL; the old one ends without a hand-off.
func (l *refLocker) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	if err := lock.ValidateToken(token); err != nil {
		return nil, err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return nil, err
	}
	key := s.key(name)
	s.expireDue(key, time.Now())
	n := s.names[key]
	if n == nil || n.holder == nil || n.holder.token != token || (n.holder.ttl == 0 && s.fault != faultAdoptSession) {
		return nil, fmt.Errorf("%w: %q has no TTL lease with token %d", lock.ErrNotHeld, name, token)
	}
	old := n.holder
	if s.fault != faultAdoptSilent {
		s.retire(old, lock.ErrAdopted)
	}
	ctx2, cancel := context.WithCancelCause(context.Background())
	lease := &refLease{
		locker: l, key: key, name: old.name, token: old.token, owner: old.owner, ttl: old.ttl,
		granted: old.granted, done: make(chan struct{}), ctx: ctx2, cancel: cancel,
	}
	if s.fault == faultAdoptNewToken {
		s.last++
		lease.token = s.last
	}
	n.holder = lease
	l.leases[lease] = true
	if lease.ttl > 0 {
		s.arm(lease)
	}
	return lease, nil
}

// Close takes every waiter of the Locker out of its queue first, and only
// then hands on what they held back and what its leases held: a closing
// Locker is never granted anything.
func (l *refLocker) Close() error {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if s.fault != faultCloseKeepsObservers {
		for o := range l.observers {
			close(o.stop)
			delete(l.observers, o)
		}
	}
	withdrawn := make(map[string]*refMulti) // the multi-holder names that lost a waiter
	for w := range l.waiters {
		switch {
		case w.mode != "" && s.fault == faultCloseGrantsOwn:
			s.withdraw(w) // hands on at once, maybe to this Locker's next waiter
		case w.mode != "":
			m := s.multi[w.key]
			s.dequeueMulti(m, w)
			withdrawn[w.key] = m
		default:
			n := s.names[w.key]
			s.dequeue(n, w)
			s.gc(w.key, n)
		}
		w.res <- refResult{err: lock.ErrClosed}
	}
	for key, m := range withdrawn {
		if s.fault != faultWithdrawStuck {
			s.handoffMulti(key, m)
		}
		s.gcMulti(key, m)
	}
	for lease := range l.leases {
		if (s.fault == faultCloseKeepsLeases && lease.mode == "") ||
			(s.fault == faultCloseKeepsMulti && (lease.mode == modePermit || lease.mode == modeRead || lease.mode == modeWrite)) {
			continue
		}
		s.end(lease, lock.ErrReleased)
	}
	return nil
}
