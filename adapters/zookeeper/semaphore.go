package zookeeper

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Semaphores (DESIGN.md, "Semaphores and read-write locks"): a permit call
// is a claim of type "semaphore of limit L" (its child's id starts with
// S<L>_); fewer than L children ahead admit it, and its grant writes its
// slot into its record (slot.go).

var (
	_ lock.Semaphores = (*Locker)(nil)
	_ lock.Permit     = permit{}
)

// AcquirePermit implements lock.Semaphores: it blocks until fewer than
// limit children precede this call's claim in name's directory (FIFO),
// ctx ends or an error occurs. A name that lives as another type, or as
// a semaphore of another limit, fails with ErrInvalidOption naming both.
func (l *Locker) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return l.acquirePermit(ctx, name, limit, true, opts)
}

// TryAcquirePermit implements lock.Semaphores: ErrHeld where
// AcquirePermit would queue (limit children ahead).
func (l *Locker) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return l.acquirePermit(ctx, name, limit, false, opts)
}

func (l *Locker) acquirePermit(ctx context.Context, name string, limit int, wait bool, opts []lock.Option) (lock.Permit, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	if err := lock.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("zookeeper: permit of %q: %w", name, err)
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: permit of %q: %w", name, err)
	}
	defer end()
	c, err := l.newClaim(name, semaphoreType(limit), false, o)
	if err != nil {
		return nil, err
	}
	le, err := l.grantClaim(ctx, opCtx, c, wait, "permit of")
	if err != nil {
		return nil, err
	}
	return permit{le, int(c.meta.slot)}, nil
}

// permit is a granted permit claim: its lease and the slot its grant
// wrote into its record.
type permit struct {
	*lease
	slot int
}

// Slot implements lock.Permit.
func (p permit) Slot() int { return p.slot }
