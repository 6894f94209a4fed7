package lock

import (
	"context"
	"fmt"
)

// MaxPermits bounds a semaphore's limit.
const MaxPermits = 1024

// Semaphores hands out at most limit permits of a name at once.
type Semaphores interface {
	// AcquirePermit blocks until one of at most limit permits of name is
	// this call's, ctx ends or an error occurs. Callers are served first
	// come, first served: a call is granted at once only if fewer than
	// limit permits are held and nobody is queued. limit must be 1 to
	// MaxPermits and the limit in force for name, else an error wrapping
	// ErrInvalidOption (naming both limits).
	AcquirePermit(ctx context.Context, name string, limit int, opts ...Option) (Permit, error)

	// TryAcquirePermit makes one attempt: ErrHeld if every permit is held
	// or callers are queued.
	TryAcquirePermit(ctx context.Context, name string, limit int, opts ...Option) (Permit, error)
}

// Permit is one permit of a semaphore: a Lease with its own token, and a
// slot that no other permit of the name held at the same time has.
type Permit interface {
	Lease

	// Slot is 0 to limit-1. A resource fenced per slot (the highest token
	// it has seen for the slot) refuses a holder that outlived its permit,
	// which the token alone cannot do among limit concurrent holders.
	Slot() int
}

// ValidateLimit reports whether limit may be a semaphore's: 1 to
// MaxPermits. The error wraps ErrInvalidOption.
func ValidateLimit(limit int) error {
	if limit < 1 || limit > MaxPermits {
		return fmt.Errorf("%w: limit %d outside [1, %d]", ErrInvalidOption, limit, MaxPermits)
	}
	return nil
}
