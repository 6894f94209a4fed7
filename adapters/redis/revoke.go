package redis

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// Revoke implements lock.Revoker (DESIGN.md, "Operating a lock"): the
// revoke script marks the lease of token revoked, lowers a TTL lease's
// expiry to the grace (this Locker's SessionTTL) and tells the holder's
// Locker, which ends the lease with lock.ErrRevoked and then releases it;
// Revoke returns once the lease is gone from the store, polling on a
// backoff. If ctx ends first the revoke stays in effect.
func (c *instance) Revoke(ctx context.Context, name string, token uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateToken(token); err != nil {
		return fmt.Errorf("redis lock: revoke %q: %w", name, err)
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis lock: revoke %q: %w", name, err)
	}
	grace := c.cfg.SessionTTL.Milliseconds()
	left, err := c.revokeStep(ctx, name, token, grace, revokeMark)
	if err != nil {
		return c.cutErr(ctx, "revoke", name, err)
	}
	if left < 0 {
		return fmt.Errorf("redis lock: revoke %q: %w: token %d does not hold it", name, lock.ErrNotHeld, token)
	}
	bo := leasecore.Backoff{Min: minRetry, Max: c.retryCap}
	for {
		wait := bo.Next()
		if left > 0 {
			wait = min(wait, left+time.Millisecond) // the store ends it then at the latest
		}
		if _, err := pause(ctx, wait, c.stop, nil); err != nil {
			if ctx.Err() != nil {
				return c.cutErr(ctx, "revoke", name, err)
			}
			return fmt.Errorf("redis lock: revoke %q: the lease has not ended yet: %w", name, err)
		}
		left, err = c.revokeStep(ctx, name, token, grace, revokeCheck)
		switch {
		case err == nil && left < 0:
			return nil
		case err != nil && (ctx.Err() != nil || !retryable(err)):
			return c.cutErr(ctx, "revoke", name, err)
		case err != nil:
			c.log.Debug("redis lock: revoke check failed", "name", name, "error", err)
		}
	}
}

// revokeStep runs the revoke script in mode m and returns the revoked
// lease's time left in the store (0 if it has no expiry), or −1 if token
// does not hold name (any more).
func (c *instance) revokeStep(ctx context.Context, name string, token uint64, grace int64, m string) (time.Duration, error) {
	v, err := c.run(ctx, revokeScript, name, token, grace, m)
	if err != nil {
		return 0, err
	}
	switch v[0] {
	case "gone":
		return -1, nil
	case "revoked":
		if len(v) > 1 {
			if pttl, ok := v[1].(int64); ok {
				return time.Duration(max(pttl, 0)) * time.Millisecond, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: revoke answered %v", ErrUnexpectedReply, v)
}

// letGo releases a lease that ended by a revoke, by token and claim, in
// the background; if the store cannot be reached it joins the stale
// leases, which the renewer deletes. Once Shutdown waits for the
// background calls it is not released (the revoke's grace ends it in the
// store); c.mu held.
func (c *instance) letGo(s staleLease) {
	c.goPendingLocked(func() {
		ctx, cancel := context.WithTimeout(c.bgCtx, c.opTimeout)
		defer cancel()
		if _, err := c.run(ctx, releaseScript, s.name, s.token, s.claim); err != nil {
			c.log.Debug("redis lock: releasing a revoked lease failed; retrying later", "name", s.name, "error", err)
			c.mu.Lock()
			c.stale = append(c.stale, s)
			c.mu.Unlock()
		}
	})
}

// Messages on a Locker's wake-up channel other than a claim ID (a
// wake-up): the lease of the claim that follows was revoked or adopted.
const (
	msgRevoked = "revoked "
	msgAdopted = "adopted "
)

// heard handles one message of the Locker's wake-up channel.
func (c *instance) heard(payload string) {
	if claim, ok := strings.CutPrefix(payload, msgRevoked); ok {
		c.withLease(claim, func(l *lease) { l.revoked("told by its revoker") })
		return
	}
	if claim, ok := strings.CutPrefix(payload, msgAdopted); ok {
		c.withLease(claim, func(l *lease) { l.adopted("told by its adopter") })
		return
	}
	c.wakeWaiter(payload)
}

// withLease runs fn, with c.mu held, on the lease of claim if this Locker
// holds one.
func (c *instance) withLease(claim string, fn func(l *lease)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for l := range c.leases {
		if l.claim == claim {
			fn(l)
			return
		}
	}
}
