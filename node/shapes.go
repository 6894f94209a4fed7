package node

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Semaphores and read-write locks (DESIGN.md, "Elections, semaphores and
// read-write locks"): an Acquire with the type, limit and mode of protocol
// 5, through the mutex's path (acquire), so the same waiter, events,
// clean-up and session machinery serve every type.

var (
	_ lock.Semaphores = (*client)(nil)
	_ lock.RWLockers  = (*client)(nil)
	_ lock.Elector    = (*client)(nil)
	_ lock.Permit     = permit{}
	_ lock.Term       = (*term)(nil)
)

// shape is what an Acquire asks for beyond a mutex; the zero shape is a
// mutex, which sets no field of protocol 5.
type shape struct {
	typ   fsmpb.LockType
	limit uint32
	mode  fsmpb.Mode
	value string
}

// String names the type as the contract's messages do ("a semaphore of
// limit 3").
func (s shape) String() string { return typeName(s.typ, s.limit) }

// typeName names a lock type (and a semaphore's limit) in messages.
func typeName(typ fsmpb.LockType, limit uint32) string {
	switch typ {
	case fsmpb.LockType_LOCK_TYPE_MUTEX:
		return "a mutex"
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		return fmt.Sprintf("a semaphore of limit %d", limit)
	case fsmpb.LockType_LOCK_TYPE_READ_WRITE:
		return "a read-write lock"
	case fsmpb.LockType_LOCK_TYPE_ELECTION:
		return "an election"
	}
	return typ.String()
}

// mismatchErr is the error of a MISMATCH result res: name lives as another
// type (or limit) than the one asked.
func mismatchErr(name string, asked shape, res *fsmpb.Result) error {
	return fmt.Errorf("%w: %q is %s, asked as %s", lock.ErrInvalidOption, name,
		typeName(res.GetType(), res.GetLimit()), asked)
}

// permit is a granted semaphore permit: a lease with its slot.
type permit struct{ *lease }

// Slot implements lock.Permit.
func (p permit) Slot() int { return p.slot }

// AcquirePermit implements lock.Semaphores.
func (c *client) AcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return c.permit(ctx, name, limit, false, opts)
}

// TryAcquirePermit implements lock.Semaphores.
func (c *client) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...lock.Option) (lock.Permit, error) {
	return c.permit(ctx, name, limit, true, opts)
}

func (c *client) permit(ctx context.Context, name string, limit int, try bool, opts []lock.Option) (lock.Permit, error) {
	if err := lock.ValidateLimit(limit); err != nil {
		return nil, fmt.Errorf("acquire permit %q: %w", name, err)
	}
	l, err := c.measured(ctx, name, try, shape{typ: fsmpb.LockType_LOCK_TYPE_SEMAPHORE, limit: uint32(limit)}, opts)
	if err != nil {
		return nil, err
	}
	return permit{l}, nil
}

// AcquireRead implements lock.RWLockers.
func (c *client) AcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.rw(ctx, name, fsmpb.Mode_MODE_READ, false, opts)
}

// TryAcquireRead implements lock.RWLockers.
func (c *client) TryAcquireRead(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.rw(ctx, name, fsmpb.Mode_MODE_READ, true, opts)
}

// AcquireWrite implements lock.RWLockers.
func (c *client) AcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.rw(ctx, name, fsmpb.Mode_MODE_WRITE, false, opts)
}

// TryAcquireWrite implements lock.RWLockers.
func (c *client) TryAcquireWrite(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.rw(ctx, name, fsmpb.Mode_MODE_WRITE, true, opts)
}

func (c *client) rw(ctx context.Context, name string, mode fsmpb.Mode, try bool, opts []lock.Option) (lock.Lease, error) {
	l, err := c.measured(ctx, name, try, shape{typ: fsmpb.LockType_LOCK_TYPE_READ_WRITE, mode: mode}, opts)
	if err != nil {
		return nil, err // not a nil *lease in a lock.Lease
	}
	return l, nil
}
