package redis

import (
	"context"
	"fmt"
	"strconv"

	"github.com/quorumlock/quorumlock/lock"
)

// Semaphores and read-write locks (DESIGN.md, "Semaphores and read-write
// locks"): a permit, a read lease and a write lease are the mutex's lease
// of a name held by a group, granted by groupScript through the queue of
// Acquire (wait) or the one attempt of TryAcquire (try).

// AcquirePermit implements lock.Semaphores: first come, first served.
func (c *instance) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return c.permit(ctx, "acquire-permit", name, limit, opts, c.queue)
}

// TryAcquirePermit implements lock.Semaphores: lock.ErrHeld if every
// permit is held or a claim is queued.
func (c *instance) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return c.permit(ctx, "try-acquire-permit", name, limit, opts, c.try)
}

// permit checks limit and runs acquire (op) with the ballot of a
// semaphore of that limit.
func (c *instance) permit(ctx context.Context, op, name string, limit int, opts []lock.Option,
	how func(ctx context.Context, name, claim string, o lock.Options, b ballot) (lock.Lease, error),
) (lock.Permit, error) {
	if err := lock.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, err)
	}
	l, err := c.acquire(ctx, op, name, opts, ballot{typ: typeSemaphore, value: strconv.Itoa(limit)}, how)
	if err != nil {
		return nil, err
	}
	return permit{l.(*lease)}, nil
}

// permit is a lock.Permit: a lease with its slot.
type permit struct {
	*lease
}

var _ lock.Permit = permit{}

// Slot implements lock.Permit.
func (p permit) Slot() int { return p.slot }

// The modes of a read-write lock's ballot.
var (
	asReader = ballot{typ: typeRW, value: "read"}
	asWriter = ballot{typ: typeRW, value: "write"}
)

// AcquireRead implements lock.RWLockers: first come, first served; a
// queued writer holds back every later reader.
func (c *instance) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "acquire-read", name, opts, asReader, c.queue)
}

// TryAcquireRead implements lock.RWLockers: lock.ErrHeld if a write lease
// is held or a claim is queued.
func (c *instance) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "try-acquire-read", name, opts, asReader, c.try)
}

// AcquireWrite implements lock.RWLockers: first come, first served.
func (c *instance) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "acquire-write", name, opts, asWriter, c.queue)
}

// TryAcquireWrite implements lock.RWLockers: lock.ErrHeld if any lease is
// held or a claim is queued.
func (c *instance) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "try-acquire-write", name, opts, asWriter, c.try)
}
