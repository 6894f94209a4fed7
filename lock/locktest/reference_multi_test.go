package locktest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// The reference store's elections, semaphores and read-write locks
// (lock/DESIGN.md, "Beyond the mutex"). A name held or queued as one of
// them is a refMulti in s.multi (a mutex is a refName in s.names; a key is
// in at most one of the two maps). Its holders are a set, its waiters one
// FIFO queue, and every change is made under s.mu: a grant at once only if
// the waiter is admissible and nobody is queued; a hand-off, after every
// release or withdrawal, grants from the head of the queue while the head
// is admissible. Election observers get every state the store passes
// through, from an unbounded buffer (the reference never needs Skipped).

// The types of a name, as error messages name them.
const (
	typeMutex     = "mutex"
	typeSemaphore = "semaphore"
	typeRW        = "read-write lock"
	typeElection  = "election"
)

// The modes of a multi-holder lease or waiter.
const (
	modePermit = "permit"
	modeRead   = "read"
	modeWrite  = "write"
	modeTerm   = "term"
)

type refMulti struct {
	typ     string
	limit   int // semaphores
	holders []*refLease
	queue   []*refWaiter
	writes  uint64 // write grants; used only by faultWriteCounter
}

// refRequest is one call of the new primitives.
type refRequest struct {
	typ, mode, name, value string
	limit                  int
	opts                   lock.Options
}

func article(typ string) string {
	if typ == typeElection {
		return "an " + typ
	}
	return "a " + typ
}

// The methods of refStore below are called with s.mu held.

// typeOf is the type key lives as; "" when free.
func (s *refStore) typeOf(key string) string {
	if s.names[key] != nil {
		return typeMutex
	}
	if m := s.multi[key]; m != nil {
		return m.typ
	}
	return ""
}

// mismatch is the error of a call of type typ (and limit) on key.
func (s *refStore) mismatch(key, name, typ string, limit int) error {
	have := s.typeOf(key)
	switch {
	case have != "" && have != typ:
		return fmt.Errorf("%w: %q is %s, asked as %s", lock.ErrInvalidOption, name, article(have), article(typ))
	case typ == typeSemaphore && have == typ && s.multi[key].limit != limit && s.fault != faultLimitIgnored:
		return fmt.Errorf("%w: %q is a semaphore of limit %d, asked as limit %d", lock.ErrInvalidOption, name, s.multi[key].limit, limit)
	}
	return nil
}

// admits reports whether a waiter of mode may be granted beside m's holders.
func (s *refStore) admits(m *refMulti, mode string) bool {
	switch mode {
	case modePermit:
		if s.fault == faultLimitPlusOne {
			return len(m.holders) <= m.limit
		}
		return len(m.holders) < m.limit
	case modeTerm:
		if s.fault == faultTwoLeaders {
			return len(m.holders) < 2
		}
	case modeRead:
		if s.fault == faultReaderBesideWriter {
			return true
		}
		return !slices.ContainsFunc(m.holders, func(h *refLease) bool { return h.mode == modeWrite })
	}
	return len(m.holders) == 0
}

// grantsAtOnce reports whether a new call of mode is granted without
// queueing: admissible, and nobody queued (no barging).
func (s *refStore) grantsAtOnce(m *refMulti, mode string) bool {
	if s.fault == faultNoWriterPreference && mode == modeRead {
		return s.admits(m, mode)
	}
	return s.admits(m, mode) && len(m.queue) == 0
}

func (s *refStore) grantMulti(l *refLocker, key string, m *refMulti, r refRequest) *refLease {
	s.last++
	token := s.last
	if r.mode == modeWrite && s.fault == faultWriteCounter {
		m.writes++
		token = m.writes
	}
	lease := s.newLease(l, key, r.name, token, r.opts, r.mode)
	lease.value, lease.slot = r.value, s.freeSlot(m)
	m.holders = append(m.holders, lease)
	if m.typ == typeElection {
		s.publish(key)
	}
	return lease
}

// freeSlot is the lowest slot no holder of m has.
func (s *refStore) freeSlot(m *refMulti) int {
	if s.fault == faultDuplicateSlot {
		return len(m.holders)
	}
	for slot := 0; ; slot++ {
		if !slices.ContainsFunc(m.holders, func(h *refLease) bool { return h.slot == slot }) {
			return slot
		}
	}
}

// handoffMulti grants from the head of the queue while the head is
// admissible: one permit per free slot, a term, a writer, or every reader
// up to the next writer.
func (s *refStore) handoffMulti(key string, m *refMulti) {
	var shared uint64 // faultSharedReadToken: the token of this hand-off's first reader
	for len(m.queue) > 0 {
		w := m.queue[0]
		if (s.fault == faultPermitLIFO && m.typ == typeSemaphore) || (s.fault == faultElectionLIFO && m.typ == typeElection) {
			w = m.queue[len(m.queue)-1]
		}
		if !s.admits(m, w.mode) {
			break
		}
		s.dequeueMulti(m, w)
		lease := s.grantMulti(w.locker, key, m, w.req)
		if s.fault == faultSharedReadToken && lease.mode == modeRead {
			if shared == 0 {
				shared = lease.token
			} else {
				lease.token = shared
				s.last--
			}
		}
		w.res <- refResult{lease: lease}
	}
	if s.fault == faultReadersPastWriter {
		for _, w := range slices.Clone(m.queue) {
			if w.mode == modeRead && s.admits(m, modeRead) {
				s.dequeueMulti(m, w)
				w.res <- refResult{lease: s.grantMulti(w.locker, key, m, w.req)}
			}
		}
	}
}

func (s *refStore) dequeueMulti(m *refMulti, w *refWaiter) {
	m.queue = slices.DeleteFunc(m.queue, func(x *refWaiter) bool { return x == w })
	w.queued = false
	delete(w.locker.waiters, w)
}

// withdraw takes a waiter out of the queue, and grants those behind it that
// it held back (readers behind a withdrawn writer).
func (s *refStore) withdraw(w *refWaiter) {
	m := s.multi[w.key]
	s.dequeueMulti(m, w)
	if s.fault != faultWithdrawStuck {
		s.handoffMulti(w.key, m)
	}
	s.gcMulti(w.key, m)
}

// endMulti is end's second half for a multi-holder lease.
func (s *refStore) endMulti(l *refLease) {
	m := s.multi[l.key]
	m.holders = slices.DeleteFunc(m.holders, func(h *refLease) bool { return h == l })
	s.handoffMulti(l.key, m)
	if m.typ == typeElection {
		s.publish(l.key)
	}
	s.gcMulti(l.key, m)
}

func (s *refStore) gcMulti(key string, m *refMulti) {
	if len(m.holders) == 0 && len(m.queue) == 0 {
		delete(s.multi, key)
	}
}

// expireDueMulti is expireDue for the holders of a multi-holder name.
func (s *refStore) expireDueMulti(key string, now time.Time) {
	if m := s.multi[key]; m != nil {
		for _, h := range slices.Clone(m.holders) {
			if !h.deadline.IsZero() && !now.Before(h.deadline) {
				s.end(h, lock.ErrExpired)
			}
		}
	}
}

func (s *refStore) infoMulti(info lock.Info, m *refMulti, now time.Time, queueLimit int) lock.Info {
	info.Waiters = len(m.queue)
	for _, w := range m.queue[:min(queueLimit, len(m.queue))] {
		info.Queue = append(info.Queue, lock.Waiter{Holder: w.locker.id, Node: "ref", Owner: w.opts.Owner, Waited: now.Sub(w.since)})
	}
	if len(m.holders) > 0 {
		h := m.holders[0]
		info.Held, info.Token, info.Owner = true, h.token, h.owner
		info.Kind, info.Since, info.Holder, info.Node = lock.KindSession, now.Sub(h.granted), h.locker.id, "ref"
		if !h.deadline.IsZero() {
			info.Kind, info.ExpiresIn = lock.KindTTL, h.deadline.Sub(now)
		}
	}
	return info
}

// acquireMulti is every acquire of the new primitives: once if try.
func (l *refLocker) acquireMulti(ctx context.Context, r refRequest, try bool) (*refLease, error) {
	s := l.s
	s.mu.Lock()
	if err := l.open(ctx); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	key := s.key(r.name)
	s.expireDue(key, time.Now())
	if err := s.mismatch(key, r.name, r.typ, r.limit); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	m := s.multi[key]
	if m == nil {
		m = &refMulti{typ: r.typ, limit: r.limit}
		s.multi[key] = m
	}
	if s.grantsAtOnce(m, r.mode) {
		lease := s.grantMulti(l, key, m, r)
		s.mu.Unlock()
		return lease, nil
	}
	if try {
		s.gcMulti(key, m)
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", lock.ErrHeld, r.name)
	}
	w := &refWaiter{locker: l, key: key, name: r.name, opts: r.opts, mode: r.mode, req: r, since: time.Now(), queued: true, res: make(chan refResult, 1)}
	m.queue = append(m.queue, w)
	l.waiters[w] = true
	s.mu.Unlock()

	select {
	case res := <-w.res:
		if res.err != nil {
			return nil, res.err
		}
		return res.lease, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.queued {
		s.withdraw(w)
		return nil, ctx.Err()
	}
	if res := <-w.res; res.lease != nil { // a grant raced the cancellation
		s.end(res.lease, lock.ErrReleased)
	}
	return nil, ctx.Err()
}

// request validates a call before it touches the store.
func request(typ, mode, name string, limit int, value string, opts []lock.Option) (refRequest, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return refRequest{}, err
	}
	if typ == typeSemaphore {
		if err := lock.ValidateLimit(limit); err != nil {
			return refRequest{}, err
		}
	}
	if err := lock.ValidateValue(value); err != nil {
		return refRequest{}, err
	}
	return refRequest{typ: typ, mode: mode, name: name, limit: limit, value: value, opts: o}, nil
}

func (l *refLocker) permit(ctx context.Context, name string, limit int, opts []lock.Option, try bool) (lock.Permit, error) {
	r, err := request(typeSemaphore, modePermit, name, limit, "", opts)
	if err != nil {
		return nil, err
	}
	lease, err := l.acquireMulti(ctx, r, try)
	if err != nil {
		return nil, err
	}
	return lease, nil
}

// AcquirePermit implements lock.Semaphores.
func (l *refLocker) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return l.permit(ctx, name, limit, opts, false)
}

// TryAcquirePermit implements lock.Semaphores.
func (l *refLocker) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return l.permit(ctx, name, limit, opts, true)
}

func (l *refLocker) rw(ctx context.Context, mode, name string, opts []lock.Option, try bool) (lock.Lease, error) {
	r, err := request(typeRW, mode, name, 0, "", opts)
	if err != nil {
		return nil, err
	}
	lease, err := l.acquireMulti(ctx, r, try)
	if err != nil {
		return nil, err
	}
	return lease, nil
}

// AcquireRead implements lock.RWLockers.
func (l *refLocker) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.rw(ctx, modeRead, name, opts, false)
}

// TryAcquireRead implements lock.RWLockers.
func (l *refLocker) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.rw(ctx, modeRead, name, opts, true)
}

// AcquireWrite implements lock.RWLockers.
func (l *refLocker) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.rw(ctx, modeWrite, name, opts, false)
}

// TryAcquireWrite implements lock.RWLockers.
func (l *refLocker) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.rw(ctx, modeWrite, name, opts, true)
}

// Campaign implements lock.Elector.
func (l *refLocker) Campaign(ctx context.Context, election, value string, opts ...lock.Option) (lock.Term, error) {
	r, err := request(typeElection, modeTerm, election, 0, value, opts)
	if err != nil {
		return nil, err
	}
	lease, err := l.acquireMulti(ctx, r, false)
	if err != nil {
		return nil, err
	}
	return lease, nil
}

// Leader implements lock.Elector.
func (l *refLocker) Leader(ctx context.Context, election string) (lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return lock.LeaderInfo{}, err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return lock.LeaderInfo{}, err
	}
	key := s.key(election)
	s.expireDue(key, time.Now())
	if have := s.typeOf(key); have != "" && have != typeElection {
		return lock.LeaderInfo{}, fmt.Errorf("%w: %q is %s, asked as an election", lock.ErrInvalidOption, election, article(have))
	}
	info := s.current(key, election)
	if !info.Elected() {
		return lock.LeaderInfo{}, fmt.Errorf("%w: election %q", lock.ErrNoLeader, election)
	}
	return info, nil
}

// current is the state of the election key; an empty seat for a name of
// another type.
func (s *refStore) current(key, name string) lock.LeaderInfo {
	info := lock.LeaderInfo{Election: name}
	if m := s.multi[key]; m != nil && m.typ == typeElection && len(m.holders) > 0 {
		h := m.holders[0]
		info.Token, info.Value, info.Holder, info.Since = h.token, h.value, h.locker.id, time.Since(h.granted)
	}
	return info
}

// Proclaim implements lock.Term.
func (l *refLease) Proclaim(ctx context.Context, value string) error {
	if err := lock.ValidateValue(value); err != nil {
		return err
	}
	defer l.lockStore()()
	s := l.store()
	if err := l.reach(ctx); err != nil {
		return err
	}
	s.expireDue(l.key, time.Now())
	if l.err != nil {
		return l.notHeld()
	}
	l.value = value
	s.publish(l.key)
	return nil
}

// Slot implements lock.Permit.
func (l *refLease) Slot() int { return l.slot }

// refObserver is one Observe call: the states not yet delivered, and the
// goroutine that delivers them on out.
type refObserver struct {
	locker  *refLocker
	key     string
	name    string
	last    lock.LeaderInfo   // the last state queued
	pending []lock.LeaderInfo // guarded by s.mu
	wake    chan struct{}     // has room for one signal: pending grew
	stop    chan struct{}     // closed by the Locker's Close
	out     chan lock.LeaderInfo
}

// Observe implements lock.Elector.
func (l *refLocker) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return nil, err
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := l.open(ctx); err != nil {
		return nil, err
	}
	key := s.key(election)
	s.expireDue(key, time.Now())
	o := &refObserver{
		locker: l, key: key, name: election,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), out: make(chan lock.LeaderInfo),
	}
	o.queue(s.current(key, election))
	s.observers[key] = append(s.observers[key], o)
	l.observers[o] = true
	go o.run(ctx)
	return o.out, nil
}

// publish queues the current state of key for every observer of it to
// which it is news. Called after each change of an election.
func (s *refStore) publish(key string) {
	for _, o := range s.observers[key] {
		cur := s.current(key, o.name)
		if cur.Token == o.last.Token && cur.Value == o.last.Value {
			continue
		}
		if cur.Token == 0 && s.fault == faultNoEmptySeat {
			continue
		}
		o.queue(cur)
	}
}

// queue is called with s.mu held.
func (o *refObserver) queue(info lock.LeaderInfo) {
	o.last = info
	o.pending = append(o.pending, info)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *refObserver) run(ctx context.Context) {
	s := o.locker.s
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.observers[o.key] = slices.DeleteFunc(s.observers[o.key], func(x *refObserver) bool { return x == o })
		if len(s.observers[o.key]) == 0 {
			delete(s.observers, o.key)
		}
		delete(o.locker.observers, o)
		close(o.out)
	}()
	for {
		select {
		case <-o.wake:
		case <-ctx.Done():
			return
		case <-o.stop:
			return
		}
		s.mu.Lock()
		batch := o.pending
		o.pending = nil
		s.mu.Unlock()
		if s.fault == faultObserveReversed {
			slices.Reverse(batch)
		}
		for _, info := range batch {
			select {
			case o.out <- info:
			case <-ctx.Done():
				return
			case <-o.stop:
				return
			}
		}
	}
}
