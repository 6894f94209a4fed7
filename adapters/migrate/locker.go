package migrate

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/quorumlock/quorumlock/lock"
)

// Locker is a lock.Locker over two stores in one phase of a move. It does
// not own them: Close ends this Locker's leases and calls, not from or to.
type Locker struct {
	from, to lock.Locker
	cfg      Config

	closing context.Context // cancelled by Close
	close   context.CancelFunc

	mu     sync.Mutex
	closed bool
	leases map[lock.Lease]struct{} // handed out and not yet ended
	calls  sync.WaitGroup          // calls in flight
}

var (
	_ lock.Locker  = (*Locker)(nil)
	_ lock.Revoker = (*Locker)(nil)
	_ lock.Lister  = (*Locker)(nil)
	_ lock.Adopter = (*Locker)(nil)
)

// New returns a Locker in cfg.Phase over from and to. With FencedTokens
// (the default) both must implement lock.TokenFloorer. from and to must be
// different Lockers of different stores: a Dual lease takes its name in
// both, and one store would make it wait for itself. Errors wrap
// lock.ErrInvalidOption, or lock.ErrUnsupported for a Locker that cannot
// raise its tokens.
func New(from, to lock.Locker, cfg Config) (*Locker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if from == nil || to == nil {
		return nil, fmt.Errorf("%w: migrate: from and to are required", lock.ErrInvalidOption)
	}
	if same(from, to) {
		return nil, fmt.Errorf("%w: migrate: from and to are the same Locker", lock.ErrInvalidOption)
	}
	if cfg.Tokens == FencedTokens {
		for side, l := range map[string]lock.Locker{"from": from, "to": to} {
			if _, ok := l.(lock.TokenFloorer); !ok {
				return nil, fmt.Errorf("migrate: FencedTokens needs %s (%T) to raise its tokens: %w", side, l, lock.ErrUnsupported)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Locker{from: from, to: to, cfg: cfg, closing: ctx, close: cancel, leases: map[lock.Lease]struct{}{}}, nil
}

// same reports whether a and b are one Locker (comparing only values that
// can be compared).
func same(a, b lock.Locker) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// Phase is the phase this Locker was made in.
func (l *Locker) Phase() Phase { return l.cfg.Phase }

// Acquire implements lock.Locker (DESIGN.md, "Phases").
func (l *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, opts, lock.Locker.Acquire, false)
}

// TryAcquire implements lock.Locker. In Dual it returns lock.ErrHeld if
// either store holds name, having released its grant in from if to was
// the one.
func (l *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquire(ctx, name, opts, lock.Locker.TryAcquire, true)
}

// acquireFunc is Acquire or TryAcquire of a store's Locker.
type acquireFunc func(lock.Locker, context.Context, string, ...lock.Option) (lock.Lease, error)

func (l *Locker) acquire(ctx context.Context, name string, opts []lock.Option, get acquireFunc, try bool) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	if _, err := lock.NewOptions(opts...); err != nil {
		return nil, err
	}
	ctx, done, err := l.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var le lock.Lease
	switch l.cfg.Phase {
	case FromOnly:
		le, err = get(l.from, ctx, name, opts...)
	case ToOnly:
		le, err = get(l.to, ctx, name, opts...)
	default:
		le, err = l.dual(ctx, name, opts, get, try)
	}
	if err != nil {
		return nil, l.closedOr(err)
	}
	return l.keep(le)
}

// begin admits a call: it returns ctx, also ended by Close, and the
// function that ends the call; ErrClosed after Close.
func (l *Locker) begin(ctx context.Context) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, fmt.Errorf("migrate: %w", lock.ErrClosed)
	}
	l.calls.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.closing, cancel)
	return ctx, func() {
		stop()
		cancel()
		l.calls.Done()
	}, nil
}

// closedOr is err, or ErrClosed if Close ended the call.
func (l *Locker) closedOr(err error) error {
	if l.closing.Err() != nil && !errors.Is(err, lock.ErrClosed) {
		return fmt.Errorf("migrate: %w (%w)", lock.ErrClosed, err)
	}
	return err
}

// keep records le until it ends, so that Close can end it; after Close it
// releases le and returns ErrClosed.
func (l *Locker) keep(le lock.Lease) (lock.Lease, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = l.giveBack(le)
		return nil, fmt.Errorf("migrate: %w", lock.ErrClosed)
	}
	l.leases[le] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(le.Context(), func() {
		l.mu.Lock()
		delete(l.leases, le)
		l.mu.Unlock()
	})
	return le, nil
}

// giveBack releases le, bounded by CleanupTimeout whatever the caller's
// ctx: it is the clean-up of a call that failed, was cancelled, or lost
// its other half. A lease that had already ended is not an error.
func (l *Locker) giveBack(le lock.Lease) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CleanupTimeout)
	defer cancel()
	err := le.Release(ctx)
	if err == nil || errors.Is(err, lock.ErrNotHeld) {
		return nil
	}
	l.cfg.Logger.Warn("migrate: a lease left behind could not be released; its store ends it at its TTL or session end",
		"name", le.Name(), "token", le.Token(), "error", err)
	return err
}

// Inspect implements lock.Locker. In Dual it reads both stores and merges
// the answers (DESIGN.md, "Leases, options and failure paths").
func (l *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	ctx, done, err := l.begin(ctx)
	if err != nil {
		return lock.Info{}, err
	}
	defer done()
	switch l.cfg.Phase {
	case FromOnly:
		return l.from.Inspect(ctx, name, opts...)
	case ToOnly:
		return l.to.Inspect(ctx, name, opts...)
	}
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	fi, err := l.from.Inspect(ctx, name, opts...)
	if err != nil {
		return lock.Info{}, l.closedOr(fmt.Errorf("migrate: inspect %q in from: %w", name, err))
	}
	ti, err := l.to.Inspect(ctx, name, opts...)
	if err != nil {
		return lock.Info{}, l.closedOr(fmt.Errorf("migrate: inspect %q in to: %w", name, err))
	}
	return merge(fi, ti, l.cfg.Tokens == FencedTokens, o.QueueLimit), nil
}

// merge is the Info of a name that from reports as fi and to as ti: the
// holder as the store whose token a Dual lease carries (to's if toFirst)
// sees it if that store holds the name, else as the other does; waiters
// of both.
func merge(fi, ti lock.Info, toFirst bool, limit int) lock.Info {
	first, second := fi, ti
	if toFirst {
		first, second = ti, fi
	}
	info := second
	if first.Held {
		info = first
	}
	info.Waiters = fi.Waiters + ti.Waiters
	queue := append(append([]lock.Waiter(nil), fi.Queue...), ti.Queue...)
	info.Queue = queue[:min(len(queue), limit)]
	if len(info.Queue) == 0 {
		info.Queue = nil
	}
	return info
}

// Close implements lock.Locker: blocked calls return ErrClosed, then every
// lease this Locker handed out is released (each bounded by
// CleanupTimeout); the error names the leases that could not be (their
// stores end them at their TTL or session end). from and to stay open.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.close()
	l.calls.Wait()
	l.mu.Lock()
	leases := make([]lock.Lease, 0, len(l.leases))
	for le := range l.leases {
		leases = append(leases, le)
	}
	l.mu.Unlock()
	errs := make([]error, len(leases))
	var wg sync.WaitGroup
	for i, le := range leases {
		wg.Go(func() { errs[i] = l.giveBack(le) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("migrate: close: leases left to their stores' TTL or session: %w", err)
	}
	return nil
}
