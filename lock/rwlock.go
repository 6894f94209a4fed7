package lock

import "context"

// RWLockers hands out many read leases or one write lease of a name, first
// come, first served with writer preference: a read is granted at once
// only if no write lease is held and nobody is queued, so a queued writer
// holds back every later reader. A write lease's token is greater than
// the token of every read lease granted before it. There is no upgrade: a
// holder of a read lease asking for the write lease of the same name
// waits for itself (or, where a backend can tell, fails with an error
// wrapping ErrInvalidOption).
type RWLockers interface {
	// AcquireRead blocks until a read lease of name is granted, ctx ends
	// or an error occurs.
	AcquireRead(ctx context.Context, name string, opts ...Option) (Lease, error)
	// TryAcquireRead makes one attempt: ErrHeld if a write lease is held
	// or callers are queued.
	TryAcquireRead(ctx context.Context, name string, opts ...Option) (Lease, error)
	// AcquireWrite blocks until the write lease of name is granted, ctx
	// ends or an error occurs.
	AcquireWrite(ctx context.Context, name string, opts ...Option) (Lease, error)
	// TryAcquireWrite makes one attempt: ErrHeld if any lease is held or
	// callers are queued.
	TryAcquireWrite(ctx context.Context, name string, opts ...Option) (Lease, error)
}
