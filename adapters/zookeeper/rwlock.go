package zookeeper

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Read-write locks (DESIGN.md, "Semaphores and read-write locks"): a read
// or write call is a claim of type read-write lock (its child's id starts
// with Rr_ or Rw_); a reader is admitted when no writer precedes it, a
// writer as the lowest child.

var _ lock.RWLockers = (*Locker)(nil)

// AcquireRead implements lock.RWLockers: it blocks until no writer's
// child precedes this call's (writers queued before it included: writer
// preference), ctx ends or an error occurs.
func (l *Locker) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquireRW(ctx, name, false, true, opts)
}

// TryAcquireRead implements lock.RWLockers: ErrHeld if a writer's child,
// held or queued, precedes this call's.
func (l *Locker) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquireRW(ctx, name, false, false, opts)
}

// AcquireWrite implements lock.RWLockers: it blocks until this call's
// child is the lowest of name's directory, ctx ends or an error occurs. A
// holder of a read lease of name waits behind itself (no upgrade).
func (l *Locker) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquireRW(ctx, name, true, true, opts)
}

// TryAcquireWrite implements lock.RWLockers: ErrHeld if any child precedes
// this call's.
func (l *Locker) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return l.acquireRW(ctx, name, true, false, opts)
}

func (l *Locker) acquireRW(ctx context.Context, name string, write, wait bool, opts []lock.Option) (lock.Lease, error) {
	what := "read lock of"
	if write {
		what = "write lock of"
	}
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: %s %q: %w", what, name, err)
	}
	defer end()
	c, err := l.newClaim(name, typeRW, write, o)
	if err != nil {
		return nil, err
	}
	le, err := l.grantClaim(ctx, opCtx, c, wait, what)
	if err != nil {
		return nil, err
	}
	return le, nil
}
