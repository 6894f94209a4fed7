package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Inspect implements lock.Locker. It is linearizable: one script on the
// primary reads lease and queue (and prunes dead waiters). If ctx ends
// before the script was sent, or while it waited on a store that answers a
// PING right after (ping), the error is ctx's alone (R5).
func (c *instance) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := c.openInspect(name); err != nil {
		return lock.Info{}, err
	}
	defer c.calls.Done()
	si, err := c.look(ctx, name)
	return si.Info, err
}

// look is inspect with R5's reading of an ended ctx: if ctx had ended
// before the script was sent, or the script was cut off by ctx and the
// store answers a PING right after, the error is ctx's alone.
func (c *instance) look(ctx context.Context, name string) (instanceInfo, error) {
	if ctx.Err() != nil { // nothing sent
		return instanceInfo{}, fmt.Errorf("redis lock: inspect %q: %w", name, ctx.Err())
	}
	si, err := c.inspect(ctx, name)
	if err != nil && ctx.Err() != nil && errors.Is(err, lock.ErrNoQuorum) && c.ping(ctx) == nil {
		return instanceInfo{}, fmt.Errorf("redis lock: inspect %q: %w", name, ctx.Err())
	}
	return si, err
}

// instanceInfo is what one primary knows about a name.
type instanceInfo struct {
	lock.Info
	claim string // the holder's claim ID
	fence uint64 // the Redlock token recorded with the lease, 0 if none
}

func (c *instance) inspect(ctx context.Context, name string) (instanceInfo, error) {
	v, err := c.run(ctx, inspectScript, name)
	if err != nil {
		return instanceInfo{}, callErr(ctx, "inspect", name, err)
	}
	si := instanceInfo{Info: lock.Info{Name: name}}
	bad := fmt.Errorf("%w: inspect answered %v", ErrUnexpectedReply, v)
	if len(v) < 2 {
		return instanceInfo{}, bad
	}
	n, ok := v[1].(int64)
	if !ok {
		return instanceInfo{}, bad
	}
	si.Waiters = int(n)
	switch v[0] {
	case "free":
		return si, nil
	case "held":
		if len(v) < 8 {
			return instanceInfo{}, bad
		}
		token, ok1 := v[2].(int64)
		owner, ok2 := v[3].(string)
		kind, ok3 := v[4].(int64)
		pttl, ok4 := v[5].(int64)
		claim, ok5 := v[6].(string)
		fence, ok6 := v[7].(int64)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
			return instanceInfo{}, bad
		}
		si.Held, si.Token, si.Owner = true, uint64(token), owner
		si.claim, si.fence = claim, uint64(fence)
		if kind > 0 && pttl > 0 {
			si.ExpiresIn = time.Duration(pttl) * time.Millisecond
		}
		return si, nil
	}
	return instanceInfo{}, bad
}
