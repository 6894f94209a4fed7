package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
		if len(v) < 5 || !parseType(&si.Info, v[3], v[4]) {
			return instanceInfo{}, bad
		}
		return si, nil
	case "held":
		if len(v) < 14 {
			return instanceInfo{}, bad
		}
		fence, ok := v[8].(int64)
		if !ok || !parseLease(&si, v[3:8], v[9], v[10]) || !parseType(&si.Info, v[11], v[12]) ||
			!parseHolders(&si.Info, v[13]) {
			return instanceInfo{}, bad
		}
		si.fence = uint64(fence)
		return si, nil
	}
	return instanceInfo{}, bad
}

// parseType fills in info's Type and Limit from what inspect.lua answers:
// the type the name lives as ("" if none) and a semaphore's limit.
func parseType(info *lock.Info, typ, limit any) bool {
	t, ok1 := typ.(string)
	n, ok2 := limit.(int64)
	if !ok1 || !ok2 {
		return false
	}
	switch t {
	case typeMutex:
		info.Type = lock.TypeMutex
	case typeElection:
		info.Type = lock.TypeElection
	case typeSemaphore:
		info.Type, info.Limit = lock.TypeSemaphore, int(n)
	case typeRW:
		info.Type = lock.TypeReadWrite
	}
	return true
}

// parseHolders fills in info's Holders from what inspect.lua answers
// (every holder of a semaphore or read-write lock, an election's term;
// none for a mutex: Holders stays nil), in token order, and makes the
// top-level fields describe the first (lock.Info).
func parseHolders(info *lock.Info, v any) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range list {
		h, ok := parseHolder(e)
		if !ok {
			return false
		}
		info.Holders = append(info.Holders, h)
	}
	if len(info.Holders) == 0 {
		return true
	}
	slices.SortFunc(info.Holders, func(a, b lock.Holder) int { return cmp.Compare(a.Token, b.Token) })
	first := info.Holders[0]
	info.Token, info.Owner, info.Kind, info.ExpiresIn = first.Token, first.Owner, first.Kind, first.ExpiresIn
	info.Since, info.Holder, info.Node = first.Since, first.Holder, first.Node
	return true
}

// parseHolder reads one holder: {token, owner, kind (TTL in ms, 0:
// session), time left ms, claim, age ms, node, slot (−1: none), mode,
// value}.
func parseHolder(e any) (lock.Holder, bool) {
	f, ok := e.([]any)
	if !ok || len(f) < 10 {
		return lock.Holder{}, false
	}
	var si instanceInfo
	slot, ok1 := f[7].(int64)
	mode, ok2 := f[8].(string)
	value, ok3 := f[9].(string)
	if !ok1 || !ok2 || !ok3 || !parseLease(&si, f[0:5], f[5], f[6]) {
		return lock.Holder{}, false
	}
	h := lock.Holder{
		Token: si.Token, Owner: si.Owner, Kind: si.Kind, ExpiresIn: si.ExpiresIn, Since: si.Since,
		Holder: si.Holder, Node: si.Node, Mode: parseMode(mode), Value: value,
	}
	if slot >= 0 {
		h.Slot = int(slot)
	}
	return h, true
}

// parseMode is the lock.Mode of a read-write lock's "read" or "write".
func parseMode(m string) lock.Mode {
	switch m {
	case "read":
		return lock.ModeRead
	case "write":
		return lock.ModeWrite
	}
	return lock.ModeNone
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
// if unknown), node, owner, mode} each.
func parseQueue(v any) ([]lock.Waiter, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	var queue []lock.Waiter
	for _, e := range list {
		w, ok := e.([]any)
		if !ok || len(w) < 5 {
			return nil, false
		}
		claim, ok1 := w[0].(string)
		waited, ok2 := w[1].(int64)
		node, ok3 := w[2].(string)
		owner, ok4 := w[3].(string)
		mode, ok5 := w[4].(string)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return nil, false
		}
		queue = append(queue, lock.Waiter{Holder: holderID(claim), Node: node, Owner: owner,
			Waited: time.Duration(max(waited, 0)) * time.Millisecond, Mode: parseMode(mode)})
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
