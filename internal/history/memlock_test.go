package history_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/quorumlock/quorumlock/lock"
)

// memLocker is a correct in-process lock.Locker for exercising the
// recorder and checker: FIFO waiters, strictly increasing tokens, and
// expire, which ends a lease the way a lost session does (the holder learns
// first: Done closes before the next waiter is granted).
type memLocker struct {
	mu    sync.Mutex
	last  uint64 // last token handed out
	names map[string]*memName
}

type memName struct {
	holder  *memLease
	waiters []chan *memLease // buffered 1
}

func newMemLocker() *memLocker { return &memLocker{names: make(map[string]*memName)} }

func (l *memLocker) name(n string) *memName {
	s, ok := l.names[n]
	if !ok {
		s = &memName{}
		l.names[n] = s
	}
	return s
}

// grantLocked makes a new lease of name; l.mu held.
func (l *memLocker) grantLocked(name string) *memLease {
	l.last += 1 + l.last%3 // tokens with gaps, like log indices
	ctx, cancel := context.WithCancelCause(context.Background())
	lease := &memLease{l: l, name: name, token: l.last, done: make(chan struct{}), ctx: ctx, cancel: cancel}
	l.name(name).holder = lease
	return lease
}

// endLocked ends lease with err and hands the name to the next waiter.
func (l *memLocker) endLocked(lease *memLease, err error) {
	lease.err = err
	close(lease.done)
	lease.cancel(err)
	s := l.name(lease.name)
	s.holder = nil
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		w <- l.grantLocked(lease.name)
	}
}

func (l *memLocker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if _, err := lock.ValidateRequest(name, opts...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	s := l.name(name)
	if s.holder == nil {
		lease := l.grantLocked(name)
		l.mu.Unlock()
		return lease, nil
	}
	w := make(chan *memLease, 1)
	s.waiters = append(s.waiters, w)
	l.mu.Unlock()
	select {
	case lease := <-w:
		return lease, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return nil, ctx.Err()
		}
	}
	// The grant raced the cancellation: give it back.
	l.endLocked(<-w, lock.ErrReleased)
	return nil, ctx.Err()
}

func (l *memLocker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if _, err := lock.ValidateRequest(name, opts...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.name(name).holder != nil {
		return nil, fmt.Errorf("%w: %q", lock.ErrHeld, name)
	}
	return l.grantLocked(name), nil
}

func (l *memLocker) Inspect(_ context.Context, name string, _ ...lock.InspectOption) (lock.Info, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.name(name)
	info := lock.Info{Name: name, Waiters: len(s.waiters)}
	if s.holder != nil {
		info.Held, info.Token = true, s.holder.token
	}
	return info, nil
}

func (l *memLocker) Close() error { return nil }

// expire ends the current lease of name, if any, as a lost session does.
func (l *memLocker) expire(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.name(name).holder; h != nil {
		l.endLocked(h, lock.ErrLost)
	}
}

type memLease struct {
	l      *memLocker
	name   string
	token  uint64
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelCauseFunc
	err    error // guarded by l.mu
}

func (m *memLease) Name() string             { return m.name }
func (m *memLease) Token() uint64            { return m.token }
func (m *memLease) Done() <-chan struct{}    { return m.done }
func (m *memLease) Context() context.Context { return m.ctx }

func (m *memLease) Err() error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	return m.err
}

func (m *memLease) Refresh(context.Context) error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	if m.err != nil {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, m.name, m.err)
	}
	return nil
}

func (m *memLease) Release(context.Context) error {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	if m.err != nil {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, m.name, m.err)
	}
	m.l.endLocked(m, lock.ErrReleased)
	return nil
}
