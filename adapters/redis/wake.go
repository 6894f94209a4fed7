package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// waitSubscribed waits (briefly) until the wake-up channel is subscribed, so
// that a queued claim does not miss its wake-up.
func (c *instance) waitSubscribed(ctx context.Context) {
	select {
	case <-c.subReady:
		return
	default:
	}
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	select {
	case <-c.subReady:
	case <-ctx.Done():
	case <-c.stop:
	case <-t.C:
	}
}

// probeTimeout bounds the probe of unsubscribed.
const probeTimeout = 250 * time.Millisecond

// unreachable tells, for a call whose ctx ended before anything was sent,
// whether the store could be reached: nil if the wake-up channel is
// subscribed or a PING (bounded by probeTimeout) is answered, else why not.
func (c *instance) unreachable(ctx context.Context) error {
	select {
	case <-c.subReady:
		return nil
	default:
	}
	return c.ping(ctx)
}

// ping is one PING, bounded by probeTimeout, for a call whose ctx ended:
// nil if the store answered (a refusal is an answer too), else why not.
func (c *instance) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	if err := c.rdb.Ping(pctx).Err(); err != nil && retryable(err) {
		return err
	}
	return nil
}

// unsubscribed is the error of an Acquire whose ctx ended while it waited
// for the wake-up subscription, before it queued: ctx's error, with
// lock.ErrNoQuorum and the last cause if the store could not be reached.
func (c *instance) unsubscribed(ctx context.Context, op, name string) error {
	if err := c.unreachable(ctx); err != nil {
		return callErr(ctx, op, name, err)
	}
	return fmt.Errorf("redis lock: %s %q: %w", op, name, ctx.Err())
}

// wakeWaiter hands a wake-up message to the waiter of claim, if it is ours.
func (c *instance) wakeWaiter(claim string) {
	c.mu.Lock()
	ch := c.waiters[claim]
	c.mu.Unlock()
	if ch != nil {
		leasecore.Kick(ch)
	}
}

// subscribeLoop keeps the Locker's wake-up channel subscribed and hands
// messages to waiters, or to leases that were revoked or adopted (heard).
// go-redis resubscribes after a reconnect; messages published meanwhile
// are lost (waiters fall back to backoff, leases learn from their next
// renewal or check).
func (c *instance) subscribeLoop() {
	defer c.bg.Done()
	_ = c.ps.Subscribe(c.bgCtx, c.wakePrefix+c.id) // recorded even if it fails; Receive reconnects
	bo := leasecore.Backoff{Min: minRetry, Max: maxRetry}
	ready := false
	for {
		msg, err := c.ps.Receive(c.bgCtx)
		if err != nil {
			select {
			case <-c.stop:
				return
			default:
			}
			c.log.Debug("redis lock: wake-up subscription", "error", err)
			if _, err := pause(context.Background(), bo.Next(), c.stop, nil); err != nil {
				return // Close began
			}
			continue
		}
		bo.Reset()
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && !ready {
				ready = true
				close(c.subReady)
			}
		case *goredis.Message:
			c.heard(m.Payload)
		}
	}
}

// setWaiter registers ch as the wake-up of claim (nil: unregisters); the
// Redlock mode registers one channel with every primary's instance.
func (c *instance) setWaiter(claim string, ch chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch == nil {
		delete(c.waiters, claim)
		return
	}
	c.waiters[claim] = ch
}

// waitSubscribed waits (briefly) until every primary's wake-up channel is
// subscribed.
func (r *redlock) waitSubscribed(ctx context.Context) {
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	for _, c := range r.subs {
		select {
		case <-c.subReady:
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		case <-t.C:
			return
		}
	}
}

// unsubscribed is the error of an Acquire whose ctx ended while it waited
// for the wake-up subscriptions, before it queued: ctx's error, with
// lock.ErrNoQuorum and the causes if a majority could not be reached.
func (r *redlock) unsubscribed(ctx context.Context, a *acquisition) error {
	t := tally{errs: make([]error, len(r.subs))}
	r.each(func(i int, c *instance) { t.errs[i] = c.unreachable(ctx) })
	for _, err := range t.errs {
		if err != nil {
			t.failed++
		}
	}
	if t.failed > len(r.subs)-r.quorum {
		return ctxErr(ctx, a.op, a.name, noMajority(ctx, t))
	}
	return a.wrap(ctx.Err())
}

// setWaiter registers ch as the wake-up of claim with every primary's
// instance (nil: unregisters).
func (r *redlock) setWaiter(claim string, ch chan struct{}) {
	for _, c := range r.subs {
		c.setWaiter(claim, ch)
	}
}

// pause waits d, or until a wake-up arrives on wake (nil: none); it ends
// early with ctx's error when ctx ends and with lock.ErrClosed when stop
// closes (Close began). woken reports a wake-up.
func pause(ctx context.Context, d time.Duration, stop, wake <-chan struct{}) (woken bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-stop:
		return false, lock.ErrClosed
	case <-wake:
		return true, nil
	case <-t.C:
		return false, nil
	}
}
