package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Inspect implements lock.Locker. It is linearizable: one script on the
// primary reads lease and queue (and prunes dead waiters). If ctx ends
// before the script was sent, or while it waited on a store that answers a
// PING right after (ping), the error is ctx's alone (R5).
func (c *instance) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	if err := c.openInspect(name); err != nil {
		return lock.Info{}, err
	}
	defer c.leave()
	si, err := c.look(ctx, name, o.QueueLimit)
	return si.Info, err
}

// look is inspect with R5's reading of an ended ctx: if ctx had ended
// before the script was sent, or the script was cut off by ctx and the
// store answers a PING right after, the error is ctx's alone.
func (c *instance) look(ctx context.Context, name string, queueLimit int) (instanceInfo, error) {
	if ctx.Err() != nil { // nothing sent
		return instanceInfo{}, fmt.Errorf("redis lock: inspect %q: %w", name, ctx.Err())
	}
	si, err := c.inspect(ctx, name, queueLimit)
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

func (c *instance) inspect(ctx context.Context, name string, queueLimit int) (instanceInfo, error) {
	v, err := c.run(ctx, inspectScript, name, queueLimit)
	if err != nil {
		return instanceInfo{}, callErr(ctx, "inspect", name, err)
	}
	si := instanceInfo{Info: lock.Info{Name: name}}
	bad := fmt.Errorf("%w: inspect answered %v", ErrUnexpectedReply, v)
	if len(v) < 3 {
		return instanceInfo{}, bad
	}
	n, ok1 := v[1].(int64)
	queue, ok2 := parseQueue(v[2])
	if !ok1 || !ok2 {
		return instanceInfo{}, bad
	}
	si.Waiters, si.Queue = int(n), queue
	switch v[0] {
	case "free":
		return si, nil
	case "held":
		if len(v) < 11 {
			return instanceInfo{}, bad
		}
		fence, ok := v[8].(int64)
		if !ok || !parseLease(&si, v[3:8], v[9], v[10]) {
			return instanceInfo{}, bad
		}
		si.fence = uint64(fence)
		return si, nil
	}
	return instanceInfo{}, bad
}

// parseLease fills in si from the fields a script answers about a held
// lease — lease: token, owner, kind (TTL in ms, 0: session), pttl, claim —
// its age in ms and its node. It reports whether they had the right types.
func parseLease(si *instanceInfo, lease []any, age, node any) bool {
	token, ok1 := lease[0].(int64)
	owner, ok2 := lease[1].(string)
	kind, ok3 := lease[2].(int64)
	pttl, ok4 := lease[3].(int64)
	claim, ok5 := lease[4].(string)
	ms, ok6 := age.(int64)
	nodeName, ok7 := node.(string)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 {
		return false
	}
	si.Held, si.Token, si.Owner, si.claim = true, uint64(token), owner, claim
	si.Kind, si.Holder, si.Node = lock.KindSession, holderID(claim), nodeName
	si.Since = time.Duration(ms) * time.Millisecond
	if kind > 0 {
		si.Kind = lock.KindTTL
		if pttl > 0 {
			si.ExpiresIn = time.Duration(pttl) * time.Millisecond
		}
	}
	return true
}

// parseQueue reads the waiters inspect.lua answers: {claim, waited ms (−1
// if unknown), node, owner} each.
func parseQueue(v any) ([]lock.Waiter, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	var queue []lock.Waiter
	for _, e := range list {
		w, ok := e.([]any)
		if !ok || len(w) < 4 {
			return nil, false
		}
		claim, ok1 := w[0].(string)
		waited, ok2 := w[1].(int64)
		node, ok3 := w[2].(string)
		owner, ok4 := w[3].(string)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, false
		}
		queue = append(queue, lock.Waiter{Holder: holderID(claim), Node: node, Owner: owner,
			Waited: time.Duration(max(waited, 0)) * time.Millisecond})
	}
	return queue, true
}

// holderID is the Holder of a claim ID "lockerID/n": its Locker's ID.
func holderID(claim string) string {
	if i := strings.LastIndexByte(claim, '/'); i >= 0 {
		return claim[:i]
	}
	return claim
}
