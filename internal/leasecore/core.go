package leasecore

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Core carries what every lease is: a name, a token, and a context that is
// cancelled, with the reason as its cause, when the lease ends. Ending is
// its only state change and happens once. The zero Core is not usable; call
// Init.
type Core struct {
	name   string
	token  uint64
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// Init makes c a held lease of name with token.
func (c *Core) Init(name string, token uint64) {
	c.name, c.token = name, token
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
}

// Name implements lock.Lease.
func (c *Core) Name() string { return c.name }

// Token implements lock.Lease.
func (c *Core) Token() uint64 { return c.token }

// Done implements lock.Lease.
func (c *Core) Done() <-chan struct{} { return c.ctx.Done() }

// Context implements lock.Lease: cancelled when the lease ends, with Err as
// its cause.
func (c *Core) Context() context.Context { return c.ctx }

// Err implements lock.Lease: nil while held, then why the lease ended.
func (c *Core) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// Ended reports whether the lease has ended.
func (c *Core) Ended() bool { return c.ctx.Err() != nil }

// End ends the lease with why, once: it reports whether this call ended it.
// A later call changes nothing, so the first cause is the one Err reports.
func (c *Core) End(why error) bool {
	if c.ctx.Err() != nil {
		return false
	}
	c.cancel(why)
	return true
}

// NotHeld is the error of a Release or Refresh of an ended lease: it wraps
// lock.ErrNotHeld and the cause the lease ended with. prefix names the
// backend ("redis lock", "zookeeper"); empty for none.
func (c *Core) NotHeld(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, c.name, c.Err())
	}
	return fmt.Errorf("%s: %q: %w: %w", prefix, c.name, lock.ErrNotHeld, c.Err())
}
