package lock

import (
	"context"
	"errors"
	"time"
)

// Locker hands out leases on names. All methods are safe for concurrent use.
//
// Errors of every call of Locker and Lease (lock/DESIGN.md, "Failure
// paths", R5): a call that ends because the store was unreachable returns
// an error satisfying errors.Is(err, ErrNoQuorum), with the last cause in
// its message, and also errors.Is(err, ctx.Err()) if it ended because its
// ctx ended. A call whose ctx ended while the store was reachable (an
// Acquire queued behind a holder) returns the ctx's error alone, without
// ErrNoQuorum.
type Locker interface {
	// Acquire blocks until name is held by a new lease, ctx ends, or a
	// non-retryable error occurs. Waiters on one name are served first come,
	// first served where the backend can (see the backend's documentation).
	// Leases are not reentrant: a second Acquire of a held name waits, even
	// from the same Locker or goroutine.
	//
	// If ctx ends while waiting, the queued request is withdrawn (and a grant
	// that raced the cancellation is released) before Acquire returns, and the
	// error satisfies errors.Is(err, ctx.Err()). That clean-up outlives ctx
	// by a bounded time (the backend documents the bound; it runs only
	// while the store is unreachable): returning first would leave a queued
	// claim behind that could still be granted to nobody.
	Acquire(ctx context.Context, name string, opts ...Option) (Lease, error)

	// TryAcquire makes one attempt without queueing. It returns ErrHeld if
	// another lease holds name.
	TryAcquire(ctx context.Context, name string, opts ...Option) (Lease, error)

	// Inspect reports the current holder and queue of name. It is
	// linearizable unless the backend documents otherwise. Inspecting a name
	// that was never locked returns an Info with Held false and no error.
	// Info.Queue holds at most DefaultQueueLimit waiters unless
	// WithQueueLimit says otherwise.
	Inspect(ctx context.Context, name string, opts ...InspectOption) (Info, error)

	// Close ends every lease this Locker holds and withdraws its queued
	// requests; blocked calls return ErrClosed. Close is idempotent. Calls
	// made after Close return ErrClosed.
	Close() error
}

// Lease is one granted claim on a name.
type Lease interface {
	// Name is the locked name.
	Name() string

	// Token is the fencing token of this grant: strictly greater than the
	// token of every earlier grant of the same name on the same store.
	Token() uint64

	// Done is closed when the lease ends for any reason: Release, expiry, loss
	// of the session, or Close of the Locker.
	Done() <-chan struct{}

	// Err is nil while the lease is held. After Done closes it is ErrReleased,
	// ErrExpired or ErrLost (possibly wrapped with detail).
	Err() error

	// Context is cancelled when Done closes; context.Cause returns Err.
	Context() context.Context

	// Refresh extends a TTL lease by its TTL from now, or confirms that a
	// session lease is still held. Once Done is closed it returns an error
	// wrapping both ErrNotHeld and the cause of the end (Err): also when the
	// lease ended while Refresh was in flight, so that nil always means the
	// lease is held with a renewed deadline (R2). It returns once the lease
	// has ended, whatever ctx it was given (R4).
	Refresh(ctx context.Context) error

	// Release ends the lease and hands the name to the next waiter. If the
	// lease had already ended (Done closed), Release returns an error
	// wrapping ErrNotHeld and the cause (Err), promptly, whatever ctx it was
	// given, also if it was already waiting on an unreachable store when the
	// lease ended (R4); the store does not go on holding the name for that
	// lease: what is left of it there is released by token, in the
	// background and bounded, if need be (R2). If Release fails with another
	// error (for example ctx ended or no quorum, R5) the lease may still be
	// held; Done tells.
	Release(ctx context.Context) error
}

// Info describes the state of one name (DESIGN.md, "Operating a lock").
// Durations are measured by the store that answers, on its own clock.
type Info struct {
	Name    string
	Held    bool
	Token   uint64 // token of the current lease; 0 when not held
	Owner   string // WithOwner value of the current lease
	Waiters int    // queued Acquire calls
	// ExpiresIn is the time left of a TTL lease as seen by the store; 0 for a
	// session lease or when not held.
	ExpiresIn time.Duration
	// Kind is KindSession or KindTTL when held, KindNone when not.
	Kind Kind
	// Since is the age of the current grant; 0 when not held.
	Since time.Duration
	// Holder is an opaque, stable ID of the session or client holding the
	// lease; "" when not held.
	Holder string
	// Node is the replica the holder is attached to, where the backend
	// knows it.
	Node string
	// Queue is the first waiters in position order (see WithQueueLimit).
	Queue []Waiter
	// Type is what the name is used as while it lives (DESIGN.md, "Beyond
	// the mutex"); TypeNone when it is free or the backend does not say.
	Type Type
	// Limit is a semaphore's limit; 0 for every other type.
	Limit int
	// Holders lists every held lease in token order, for every type but a
	// mutex (nil for a mutex, whose one lease is the top-level fields, and
	// where the backend does not report them). The top-level fields
	// describe the first.
	Holders []Holder
}

// Errors returned by every backend. Backends wrap them with detail; test
// with errors.Is.
var (
	// ErrHeld: TryAcquire found the name held by another lease.
	ErrHeld = errors.New("quorumlock: lock is held")
	// ErrNotHeld: Release or Refresh of a lease that has already ended.
	ErrNotHeld = errors.New("quorumlock: lease not held")
	// ErrReleased: the lease ended by its own Release or its Locker's Close.
	ErrReleased = errors.New("quorumlock: lease released")
	// ErrExpired: a TTL lease reached its TTL without a Refresh.
	ErrExpired = errors.New("quorumlock: lease expired")
	// ErrLost: the lease ended for another reason, typically because the
	// session could not be renewed in time or was expired by the store.
	ErrLost = errors.New("quorumlock: lease lost")
	// ErrInvalidName: empty, oversize, not UTF-8 or with control characters.
	ErrInvalidName = errors.New("quorumlock: invalid lock name")
	// ErrInvalidOption: an Option out of range (TTL, owner size or
	// encoding, ...).
	ErrInvalidOption = errors.New("quorumlock: invalid option")
	// ErrClosed: the Locker (or the node under it) is closed.
	ErrClosed = errors.New("quorumlock: locker closed")
	// ErrNoQuorum: the store was unreachable (no quorum, a server down)
	// until the call ended; see Locker for how it combines with ctx's error.
	ErrNoQuorum = errors.New("quorumlock: no quorum")
	// ErrLimit: the store refused to grow past one of its caps (sessions,
	// names, names per session, waiters per name; see the backend's
	// documentation). Nothing was queued or granted; retrying helps only
	// once other calls have let go.
	ErrLimit = errors.New("quorumlock: limit reached")
)
