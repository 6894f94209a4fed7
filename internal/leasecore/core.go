package leasecore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// Core carries what every lease is: a name, a token, and a context that is
// cancelled, with the reason as its cause, when the lease ends. Ending is
// its only state change and happens once, through the Ender that New
// returns with it. A backend embeds the Core in its lease type (which then
// has Name, Token, Done, Context and Err) and keeps the Ender in an
// unexported field, so that whoever holds the lease cannot end it behind
// the backend's back.
type Core struct {
	name  string
	token uint64
	ctx   context.Context
}

// Ender ends the lease of the Core it came with. Copies of an Ender end
// the same lease.
type Ender struct{ *ending }

type ending struct {
	ended  atomic.Bool
	cancel context.CancelCauseFunc
	// The measurements (metrics/DESIGN.md, "Rules for backends"): the
	// lease counts in sink's Holding from New to its end, which sink's
	// Ended reports with the time held.
	sink  metrics.Sink
	kind  lock.Kind
	since time.Time
}

// New returns the Core of a held lease of name with token, and its Ender;
// the lease is not measured.
func New(name string, token uint64) (Core, Ender) {
	return NewMeasured(name, token, lock.KindNone, nil)
}

// NewMeasured is New for a lease measured on sink (nil for none) as a
// lease of kind: it counts as held until it ends, and its end is reported
// with its reason and the time it was held.
func NewMeasured(name string, token uint64, kind lock.Kind, sink metrics.Sink) (Core, Ender) {
	ctx, cancel := context.WithCancelCause(context.Background())
	e := &ending{cancel: cancel, sink: metrics.OrNop(sink), kind: kind, since: time.Now()}
	e.sink.Holding(+1)
	return Core{name: name, token: token, ctx: ctx}, Ender{e}
}

// End ends the lease with why, once: it reports whether this call ended it,
// true for exactly one call even when several race. The first cause is the
// one Err reports.
func (e Ender) End(why error) bool {
	if !e.ended.CompareAndSwap(false, true) {
		return false
	}
	e.cancel(why)
	e.sink.Holding(-1)
	e.sink.Ended(e.kind, metrics.ReasonOf(why), time.Since(e.since))
	return true
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

// NotHeld is the error of a Release or Refresh of an ended lease: it wraps
// lock.ErrNotHeld and the cause the lease ended with. prefix names the
// backend ("redis lock", "zookeeper"); empty for none.
func (c *Core) NotHeld(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, c.name, c.Err())
	}
	return fmt.Errorf("%s: %q: %w: %w", prefix, c.name, lock.ErrNotHeld, c.Err())
}
