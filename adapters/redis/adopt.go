package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// Adopt implements lock.Adopter (DESIGN.md, "Operating a lock"): the adopt
// script gives the TTL lease of token a new claim of this Locker and a
// full TTL, and tells the previous holder's Locker, whose lease ends with
// lock.ErrAdopted. The returned lease's deadline counts from the send time
// of the script (I3); an election's term is adopted as a lock.Term (its
// Release resigns: Done closes before the release is sent), a
// semaphore's permit as a lock.Permit with its slot. The script
// runs detached from ctx (bounded by opTimeout), like a grant; an
// adoption whose caller's ctx ended meanwhile, or that raced Close, is
// released again.
func (c *instance) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	if err := lock.ValidateToken(token); err != nil {
		return nil, fmt.Errorf("redis lock: adopt %q: %w", name, err)
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.leave()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis lock: adopt %q: %w", name, err)
	}
	claim := c.newClaim()
	sent := time.Now()
	callCtx, cancel := c.detached(ctx)
	v, err := c.run(callCtx, adoptScript, name, token, claim, c.cfg.Node)
	cancel()
	if err != nil {
		return nil, callErr(ctx, "adopt", name, err)
	}
	var px time.Duration
	var typ string
	var slot int64
	switch v[0] {
	case "adopted":
		ms, ok := int64(0), len(v) > 3
		if ok {
			ms, ok = v[1].(int64)
		}
		if ok {
			typ, ok = v[2].(string)
		}
		if ok {
			slot, ok = v[3].(int64)
		}
		if !ok || ms <= 0 {
			return nil, fmt.Errorf("%w: adopt answered %v", ErrUnexpectedReply, v)
		}
		px = time.Duration(ms) * time.Millisecond
	case "gone":
		return nil, fmt.Errorf("redis lock: adopt %q: %w: token %d does not hold it", name, lock.ErrNotHeld, token)
	case "session":
		return nil, fmt.Errorf("redis lock: adopt %q: %w: token %d is a session lease, which cannot be adopted", name, lock.ErrNotHeld, token)
	case "revoked":
		return nil, fmt.Errorf("redis lock: adopt %q: %w: token %d was revoked", name, lock.ErrNotHeld, token)
	default:
		return nil, fmt.Errorf("%w: adopt answered %v", ErrUnexpectedReply, v)
	}

	l := &lease{c: c, claim: claim, ttl: px, px: px, slot: int(slot)}
	c.mu.Lock()
	if c.closed || ctx.Err() != nil {
		c.mu.Unlock()
		c.giveBack(ctx, name, claim, 0) // deletes the lease if claim holds it
		if ctx.Err() != nil {
			return nil, fmt.Errorf("redis lock: adopt %q: %w", name, ctx.Err())
		}
		return nil, fmt.Errorf("redis lock: adopt %q: %w", name, lock.ErrClosed)
	}
	// Handed out: measured from here, and counted as a grant, so that
	// grants − ends = held (DESIGN.md, "Metrics").
	l.Core, l.ender = leasecore.NewMeasured(name, token, lock.KindTTL, c.sink)
	l.dl.Start(sent.Add(px-driftMargin(px)), l.onDeadline)
	c.leases[l] = struct{}{}
	c.mu.Unlock()
	c.sink.Granted(lock.KindTTL, 0)
	switch typ {
	case typeElection: // a term: its Release resigns, Proclaim works
		return &term{lease: l}, nil
	case typeSemaphore: // a permit keeps its slot
		return permit{l}, nil
	}
	return l, nil
}
