package redis

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Locker is a lock.Locker on Redis: on one primary (Config.Addr or
// Config.Client), or with Config.Addrs on a majority of N independent
// primaries (Redlock). Create it with New; all methods are safe for
// concurrent use.
type Locker struct {
	impl     lock.Locker
	shutdown func(context.Context) error
	one      *instance // the single-primary mode
	many     *redlock  // the Redlock mode
}

var (
	_ lock.Locker  = (*Locker)(nil)
	_ lock.Lister  = (*Locker)(nil)
	_ lock.Revoker = (*Locker)(nil)
	_ lock.Adopter = (*Locker)(nil)

	_ lock.TokenFloorer = (*Locker)(nil)
	_ lock.Elector      = (*Locker)(nil)
	_ lock.Semaphores   = (*Locker)(nil)
	_ lock.RWLockers    = (*Locker)(nil)
)

// New validates cfg and returns a Locker. It does not wait for a server
// (as go-redis clients do not): calls connect. The error wraps
// ErrInvalidConfig and names the bad field.
func New(cfg Config) (*Locker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(cfg.Addrs) > 0 {
		r := newRedlock(cfg)
		return &Locker{impl: r, shutdown: r.Shutdown, many: r}, nil
	}
	c := newInstance(cfg, newLockerID())
	return &Locker{impl: c, shutdown: c.Shutdown, one: c}, nil
}

// Acquire implements lock.Locker. Waiters of a name are served first come,
// first served on a single primary; in Redlock mode they are not (see
// DESIGN.md).
func (l *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.impl.Acquire(ctx, name, opts...)
}

// TryAcquire implements lock.Locker. On a single primary it returns
// lock.ErrHeld also when the name is momentarily free but another claim is
// queued ahead.
func (l *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.impl.TryAcquire(ctx, name, opts...)
}

// Inspect implements lock.Locker. On a single primary it is linearizable:
// one script reads lease and queue (and prunes dead waiters). In Redlock
// mode it combines the answers of a majority.
func (l *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	return l.impl.Inspect(ctx, name, opts...)
}

// List implements lock.Lister on a single primary: SCAN over the lease
// keys with the prefix, one atomic read per page; names come in SCAN's
// order, and a name may be listed twice (see DESIGN.md). In Redlock mode
// it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	if l.one == nil {
		return lock.Page{}, fmt.Errorf("redis lock: list in Redlock mode: %w", lock.ErrUnsupported)
	}
	return l.one.List(ctx, prefix, opts...)
}

// Revoke implements lock.Revoker on a single primary. The grace after
// which the store ends a TTL lease whose holder does not let go is this
// Locker's SessionTTL; a session lease keeps its own expiry. In Redlock
// mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) Revoke(ctx context.Context, name string, token uint64) error {
	if l.one == nil {
		return fmt.Errorf("redis lock: revoke in Redlock mode: %w", lock.ErrUnsupported)
	}
	return l.one.Revoke(ctx, name, token)
}

// Adopt implements lock.Adopter on a single primary. In Redlock mode it
// returns an error wrapping lock.ErrUnsupported.
func (l *Locker) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	if l.one == nil {
		return nil, fmt.Errorf("redis lock: adopt in Redlock mode: %w", lock.ErrUnsupported)
	}
	return l.one.Adopt(ctx, name, token)
}

// FloorToken implements lock.TokenFloorer: it raises name's token counter
// to floor if it is below, so that every later grant's token is greater
// than floor; in Redlock mode on every primary, and it succeeds once a
// majority took it. floor must be at most 2^52 on this adapter (tokens
// pass through Lua's numbers); above, the error wraps lock.ErrUnsupported.
func (l *Locker) FloorToken(ctx context.Context, name string, floor uint64) error {
	if l.one == nil {
		return l.many.FloorToken(ctx, name, floor)
	}
	return l.one.FloorToken(ctx, name, floor)
}

// Shutdown stops the Locker within ctx: new calls fail with
// lock.ErrClosed, blocked calls return lock.ErrClosed after withdrawing
// their queued claims in Redis, the calls in progress are waited for,
// every lease ends with lock.ErrReleased (Done closes) and is deleted in
// Redis, and go-redis clients created by New are closed. When ctx ends
// first, Shutdown stops anyway: the leases still end locally, what is in
// flight is cut off, and what was not done in Redis is left to its expiry
// (a lease's TTL, a session lease's and a queued claim's SessionTTL); the
// error then wraps ctx's error. Calls still in progress then return
// shortly after, with lock.ErrClosed or their error. With a caller's
// Config.Client, which Shutdown does not close, background calls in flight
// end by their own bounds (at most SessionTTL/3 or 5 s, if the client has
// ContextTimeoutEnabled) and Shutdown waits for them. Shutdown and Close
// act once; later calls return nil.
func (l *Locker) Shutdown(ctx context.Context) error { return l.shutdown(ctx) }

// Close implements lock.Locker: Shutdown bounded by CloseTimeout.
func (l *Locker) Close() error { return l.impl.Close() }

// errRedlockElection is the answer of the Elector's methods in Redlock
// mode (DESIGN.md, "Redlock mode: ErrUnsupported").
var errRedlockElection = fmt.Errorf("redis lock: elections in Redlock mode (not FIFO; no single order of states or hand-off across primaries): %w", lock.ErrUnsupported)

// Campaign implements lock.Elector on a single primary: candidates are
// served first come, first served, and a resigning or expired term hands
// the seat to the first live candidate. The Term's Release closes Done
// before it is sent. In Redlock mode it returns an error wrapping
// lock.ErrUnsupported.
func (l *Locker) Campaign(ctx context.Context, election, value string, opts ...lock.Option) (lock.Term, error) {
	if l.one == nil {
		return nil, errRedlockElection
	}
	return l.one.Campaign(ctx, election, value, opts...)
}

// Leader implements lock.Elector on a single primary; in Redlock mode it
// returns an error wrapping lock.ErrUnsupported.
func (l *Locker) Leader(ctx context.Context, election string) (lock.LeaderInfo, error) {
	if l.one == nil {
		return lock.LeaderInfo{}, errRedlockElection
	}
	return l.one.Leader(ctx, election)
}

// Observe implements lock.Elector on a single primary, with one
// connection of its own per call (a subscription); in Redlock mode it
// returns an error wrapping lock.ErrUnsupported.
func (l *Locker) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if l.one == nil {
		return nil, errRedlockElection
	}
	return l.one.Observe(ctx, election)
}

// errRedlockGroup is the answer of the Semaphores' and RWLockers' methods
// in Redlock mode (DESIGN.md, "Semaphores and read-write locks").
var errRedlockGroup = fmt.Errorf("redis lock: semaphores and read-write locks in Redlock mode (a majority of primaries does not bound the holders; not FIFO): %w", lock.ErrUnsupported)

// AcquirePermit implements lock.Semaphores on a single primary (first
// come, first served); in Redlock mode it returns an error wrapping
// lock.ErrUnsupported.
func (l *Locker) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.AcquirePermit(ctx, name, limit, opts...)
}

// TryAcquirePermit implements lock.Semaphores on a single primary; in
// Redlock mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.TryAcquirePermit(ctx, name, limit, opts...)
}

// AcquireRead implements lock.RWLockers on a single primary (first come,
// first served, a queued writer holding back later readers); in Redlock
// mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.AcquireRead(ctx, name, opts...)
}

// TryAcquireRead implements lock.RWLockers on a single primary; in Redlock
// mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.TryAcquireRead(ctx, name, opts...)
}

// AcquireWrite implements lock.RWLockers on a single primary; in Redlock
// mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.AcquireWrite(ctx, name, opts...)
}

// TryAcquireWrite implements lock.RWLockers on a single primary; in
// Redlock mode it returns an error wrapping lock.ErrUnsupported.
func (l *Locker) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if l.one == nil {
		return nil, errRedlockGroup
	}
	return l.one.TryAcquireWrite(ctx, name, opts...)
}
