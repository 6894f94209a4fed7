package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/lock"
)

// CloseTimeout bounds Close: Close is Shutdown with a ctx that ends after
// CloseTimeout.
const CloseTimeout = 5 * time.Second

// closeWithin is Close on a Locker whose Shutdown is shutdown.
func closeWithin(shutdown func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
	defer cancel()
	return shutdown(ctx)
}

// Close implements lock.Locker for one primary: Shutdown bounded by
// CloseTimeout.
func (c *instance) Close() error { return closeWithin(c.Shutdown) }

// Shutdown stops the Locker on one primary (DESIGN.md, "Lifecycle: New,
// Shutdown and Close"): blocked calls return lock.ErrClosed (a queued
// claim is withdrawn), the calls in progress are waited for, every lease
// ends with lock.ErrReleased and is deleted in the store, within ctx. When
// ctx ends first, what is in flight is cut off (the own go-redis client is
// closed), the rest is left to the store's expiry, and the error wraps
// ctx's error. Only the first call acts.
func (c *instance) Shutdown(ctx context.Context) error {
	if !c.shut() {
		return nil
	}
	stopHalting := context.AfterFunc(ctx, func() {
		c.halt()               // cut off the detached calls
		_ = c.closeOwnClient() // and every read in progress
	})
	defer stopHalting()
	defer c.halt()
	var left []string // what ctx left to the store's expiry
	if !c.waitIdle(ctx) {
		left = append(left, "calls in progress (a queued claim is pruned after SessionTTL)")
	}

	c.bgCancel()
	psErr := c.ps.Close()
	c.bg.Wait() // the renewer and the subscriber: ended by bgCancel and ps.Close, or halted

	c.mu.Lock()
	leases := c.stale // ended by their deadline, maybe still in the store
	for l := range c.leases {
		leases = append(leases, staleLease{name: l.Name(), token: l.Token(), claim: l.claim})
		l.end(fmt.Errorf("%w: its Locker was closed", lock.ErrReleased))
	}
	c.stale = nil
	c.mu.Unlock()

	var errs []error
	if len(leases) > 0 {
		if err := c.releaseAll(ctx, leases); err != nil {
			if ctx.Err() == nil {
				errs = append(errs, err)
			}
			left = append(left, fmt.Sprintf("%d leases not released (they expire after their TTL): %v", len(leases), err))
		}
	}
	if psErr != nil && !errors.Is(psErr, goredis.ErrClosed) {
		errs = append(errs, psErr)
	}
	errs = append(errs, c.closeOwnClient())

	c.mu.Lock()
	c.halted = true // no more background calls: pending can be waited for
	c.mu.Unlock()
	c.pending.Wait() // a closed client ends them at once; a caller's Client: their own bounds
	c.sink.Sessions(-1)

	if len(left) > 0 {
		c.log.Warn("redis lock: shutdown: left to the store's expiry", "holder", c.id, "left", strings.Join(left, "; "))
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("ended before cleaning up in the store (%s): %w", strings.Join(left, "; "), ctx.Err()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redis lock: shutdown: %w", err)
	}
	return nil
}

// closeOwnClient closes the go-redis client if New created it, once, and
// returns what that returned (nil for a caller's Client).
func (c *instance) closeOwnClient() error {
	c.closeClient.Do(func() {
		if c.owned {
			c.clientErr = c.rdb.Close()
		}
	})
	return c.clientErr
}

// releaseAll deletes leases in Redis in one pipeline (Shutdown).
func (c *instance) releaseAll(ctx context.Context, leases []staleLease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := releaseScript.Load(ctx, c.rdb).Err(); err != nil {
		return err
	}
	pipe := c.rdb.Pipeline()
	for _, l := range leases {
		epoch, fresh := c.epochArgs()
		releaseScript.EvalSha(ctx, pipe, c.keys(l.name), epoch, fresh, c.wakePrefix, l.token, l.claim)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// Close implements lock.Locker in Redlock mode: Shutdown bounded by
// CloseTimeout.
func (r *redlock) Close() error { return closeWithin(r.Shutdown) }

// Shutdown stops the Redlock Locker: it refuses new calls, waits for those
// in progress within ctx, ends every lease with lock.ErrReleased, then
// shuts every primary's part down with ctx (each deletes its per-primary
// leases). It fails only if a majority of primaries could not; the error
// wraps ctx's error if ctx ended first.
func (r *redlock) Shutdown(ctx context.Context) error {
	if !r.shut() {
		return nil
	}
	r.waitIdle(ctx) // a call still in progress fails once its primaries are shut down
	r.mu.Lock()
	for ml := range r.leases {
		ml.end(fmt.Errorf("%w: its Locker was closed", lock.ErrReleased))
	}
	r.mu.Unlock()
	errs := make([]error, len(r.subs))
	r.each(func(i int, c *instance) { errs[i] = c.Shutdown(ctx) }) // releases the per-primary leases
	r.sink.Sessions(-1)
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed > len(r.subs)-r.quorum { // a dead minority is what Redlock is for
		return fmt.Errorf("redis lock: shutdown: %w", errors.Join(errs...))
	}
	return nil
}
