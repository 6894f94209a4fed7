package lock

import (
	"context"
	"errors"
	"time"
)

// Locker hands out leases on names. All methods are safe for concurrent use.
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
	Inspect(ctx context.Context, name string) (Info, error)

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
	// session lease is still held. It returns ErrNotHeld if the lease has
	// already ended (after which Err tells why).
	Refresh(ctx context.Context) error

	// Release ends the lease and hands the name to the next waiter. It returns
	// ErrNotHeld if the lease had already ended. If Release fails with another
	// error (for example ctx ended or no quorum) the lease may still be held;
	// Done tells.
	Release(ctx context.Context) error
}

// Info describes the state of one name.
type Info struct {
	Name    string
	Held    bool
	Token   uint64 // token of the current lease; 0 when not held
	Owner   string // WithOwner value of the current lease
	Waiters int    // queued Acquire calls
	// ExpiresIn is the time left of a TTL lease as seen by the store; 0 for a
	// session lease or when not held.
	ExpiresIn time.Duration
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
	// ErrInvalidOption: an Option out of range (TTL, owner size, ...).
	ErrInvalidOption = errors.New("quorumlock: invalid option")
	// ErrClosed: the Locker (or the node under it) is closed.
	ErrClosed = errors.New("quorumlock: locker closed")
	// ErrNoQuorum: the store could not commit within the caller's deadline.
	ErrNoQuorum = errors.New("quorumlock: no quorum")
)
