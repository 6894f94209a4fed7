package node

import (
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
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
// node's apply of the grant where it saw it (ages). The top-level fields
// describe the first holder; Holders lists every one for all types but a
// mutex.
func lockInfo(li fsm.LockInfo, a *ages, now, wall time.Time) lock.Info {
	info := lock.Info{Name: li.Name, Held: li.Held, Waiters: li.Waiters}
	if !li.Held && li.Waiters == 0 {
		return info
	}
	info.Type, info.Limit = lockType(li.Type), li.Limit
	if !li.Held {
		return info
	}
	leases := li.Leases()
	first := holder(li.Name, leases[0], a, now, wall)
	info.Token, info.Owner, info.Kind, info.ExpiresIn = first.Token, first.Owner, first.Kind, first.ExpiresIn
	info.Since, info.Holder, info.Node = first.Since, first.Holder, first.Node
	if li.Holders != nil {
		info.Holders = make([]lock.Holder, len(leases))
		for i, h := range leases {
			info.Holders[i] = holder(li.Name, h, a, now, wall)
		}
	}
	return info
}

// holder is the held lease h of name as Inspect reports it.
func holder(name string, h fsm.HolderInfo, a *ages, now, wall time.Time) lock.Holder {
	out := lock.Holder{
		Token: h.Token, Owner: h.Owner, Kind: kindOf(h.TTL), Holder: holderID(h.Session), Node: h.Node,
		Mode: lockMode(h.Mode), Slot: h.Slot, Value: h.Value,
		Since: a.since(name, h.Token, h.GrantedUnixNano, now, wall),
	}
	if h.TTL > 0 {
		left := time.Unix(0, h.RefreshedUnixNano).Add(h.TTL).Sub(wall)
		out.ExpiresIn = min(max(left, time.Nanosecond), h.TTL) // ≤ 0: expiring, not yet committed
	}
	return out
}

// lockType is the contract's name of a state machine's lock type.
func lockType(t fsmpb.LockType) lock.Type {
	switch t {
	case fsmpb.LockType_LOCK_TYPE_MUTEX:
		return lock.TypeMutex
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		return lock.TypeSemaphore
	case fsmpb.LockType_LOCK_TYPE_READ_WRITE:
		return lock.TypeReadWrite
	case fsmpb.LockType_LOCK_TYPE_ELECTION:
		return lock.TypeElection
	}
	return lock.TypeNone
}

// lockMode is the contract's name of a claim's mode.
func lockMode(m fsmpb.Mode) lock.Mode {
	switch m {
	case fsmpb.Mode_MODE_READ:
		return lock.ModeRead
	case fsmpb.Mode_MODE_WRITE:
		return lock.ModeWrite
	}
	return lock.ModeNone
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
			Waited: a.waited(cl.Claim, cl.QueuedUnixNano, now, wall), Mode: lockMode(cl.Mode),
		})
	}
	return out
}
