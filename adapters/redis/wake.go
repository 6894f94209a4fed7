package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
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

// wakeWaiter hands a wake-up message to the waiter of claim, if it is ours.
func (c *instance) wakeWaiter(claim string) {
	c.mu.Lock()
	ch := c.waiters[claim]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// subscribeLoop keeps the Locker's wake-up channel subscribed and hands
// messages to waiters. go-redis resubscribes after a reconnect; messages
// published meanwhile are lost (waiters fall back to backoff).
func (c *instance) subscribeLoop() {
	defer c.bg.Done()
	_ = c.ps.Subscribe(c.bgCtx, c.wakePrefix+c.id) // recorded even if it fails; Receive reconnects
	backoff := minRetry
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
			t := time.NewTimer(jitter(backoff))
			select {
			case <-c.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxRetry)
			continue
		}
		backoff = minRetry
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && !ready {
				ready = true
				close(c.subReady)
			}
		case *goredis.Message:
			c.wakeWaiter(m.Payload)
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
