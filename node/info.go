package node

import (
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/lock"
)

// What Inspect and List report (DESIGN.md, "Operating a lock").

// kindOf is the kind of a lease with TTL ttl (0: a session lease).
func kindOf(ttl time.Duration) lock.Kind {
	if ttl > 0 {
		return lock.KindTTL
	}
	return lock.KindSession
}

// holderID is how Inspect and List name a session: its ID as 16 lowercase
// hex digits.
func holderID(session uint64) string { return fmt.Sprintf("%016x", session) }

// localInfo reports name from this node's applied state, with at most
// queueLimit waiters (none if 0).
func (n *Node) localInfo(name string, queueLimit int) lock.Info {
	var info lock.Info
	n.bridge.readAges(func(s *fsm.State, a *ages) {
		now, wall := time.Now(), n.wallNow()
		info = lockInfo(s.Lock(name), a, now, wall)
		if queueLimit > 0 {
			info.Queue = waiters(s.Queue(name, queueLimit), a, now, wall)
		}
	})
	return info
}

// lockInfo is Info without its Queue. A TTL lease's time left is the
// leader's stamp of its grant or last refresh plus the TTL, read against
// the local wall clock, so clamped to (0, TTL]. Since counts from this
// node's apply of the grant where it saw it (ages).
func lockInfo(li fsm.LockInfo, a *ages, now, wall time.Time) lock.Info {
	info := lock.Info{Name: li.Name, Held: li.Held, Token: li.Token, Owner: li.Owner, Waiters: li.Waiters}
	if !li.Held {
		return info
	}
	info.Kind = lock.KindSession
	if li.TTL > 0 {
		info.Kind = lock.KindTTL
		left := time.Unix(0, li.RefreshedUnixNano).Add(li.TTL).Sub(wall)
		info.ExpiresIn = min(max(left, time.Nanosecond), li.TTL) // ≤ 0: expiring, not yet committed
	}
	info.Since = a.since(li.Name, li.Token, li.GrantedUnixNano, now, wall)
	info.Holder, info.Node = holderID(li.Session), li.Node
	return info
}

// waiters is Info.Queue: the claims q in queue order.
func waiters(q []fsm.ClaimInfo, a *ages, now, wall time.Time) []lock.Waiter {
	if len(q) == 0 {
		return nil
	}
	out := make([]lock.Waiter, 0, len(q))
	for _, cl := range q {
		out = append(out, lock.Waiter{
			Holder: holderID(cl.Session), Node: cl.Node, Owner: cl.Owner,
			Waited: a.waited(cl.Claim, cl.QueuedUnixNano, now, wall),
		})
	}
	return out
}
