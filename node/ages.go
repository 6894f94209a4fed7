package node

import (
	"time"

	"github.com/quorumlock/quorumlock/fsm"
)

// ages is when this node applied, live, each grant (by name and token:
// from protocol 4 two names may carry one token) and each
// queued claim (by claim ID) that the state still holds: what Inspect's
// Since and Waited count from (DESIGN.md, "Time"). The bridge keeps it
// under its mutex and updates it on the apply path. Every entry is for a
// lease or a claim of the state: the events that end them remove it, and a
// restore drops what the new state no longer holds.
type ages struct {
	granted map[grantKey]time.Time
	queued  map[uint64]aged // by claim
}

// grantKey names a grant: tokens are unique per name only (fsm/DESIGN.md,
// "Protocol 4").
type grantKey struct {
	name  string
	token uint64
}

// aged is the local time (with its monotonic reading) at which the grant or
// claim of name was applied here.
type aged struct {
	name string
	at   time.Time
}

func newAges() *ages {
	return &ages{granted: map[grantKey]time.Time{}, queued: map[uint64]aged{}}
}

// note records the events of one applied entry, applied at now; live is
// false for an entry applied while the node was starting, whose grants and
// claims are older than now.
func (a *ages) note(events []fsm.Event, now time.Time, live bool) {
	for _, ev := range events {
		switch ev.Kind {
		case fsm.EventGranted:
			delete(a.queued, ev.Claim)
			if live {
				a.granted[grantKey{ev.Name, ev.Token}] = now
			}
		case fsm.EventQueued:
			if live {
				a.queued[ev.Claim] = aged{ev.Name, now}
			}
		case fsm.EventEnded:
			delete(a.granted, grantKey{ev.Name, ev.Token})
		case fsm.EventWithdrawn:
			delete(a.queued, ev.Claim)
		}
	}
}

// prune drops what st, a state restored from a snapshot, no longer holds.
func (a *ages) prune(st *fsm.State) {
	for g := range a.granted {
		if _, held := st.Lock(g.name).Lease(g.token); !held {
			delete(a.granted, g)
		}
	}
	for claim, q := range a.queued {
		if !st.Queued(q.name, claim) {
			delete(a.queued, claim)
		}
	}
}

// size is the number of grants and claims recorded.
func (a *ages) size() int { return len(a.granted) + len(a.queued) }

// since is the age of the grant (name, token) at now; stamp is the
// leader's stamp of its grant, read against wall when this node did not
// see it live.
func (a *ages) since(name string, token uint64, stamp int64, now, wall time.Time) time.Duration {
	at, ok := a.granted[grantKey{name, token}]
	return age(at, ok, stamp, now, wall)
}

// waited is since for the queued claim.
func (a *ages) waited(claim uint64, stamp int64, now, wall time.Time) time.Duration {
	q, ok := a.queued[claim]
	return age(q.at, ok, stamp, now, wall)
}

// age is now − at on the monotonic clock if this node saw the apply live
// (seen), else the leader's stamp against the local wall clock, clamped to
// ≥ 0, or 0 without a stamp (below protocol level 2).
func age(at time.Time, seen bool, stamp int64, now, wall time.Time) time.Duration {
	switch {
	case seen:
		return now.Sub(at)
	case stamp == 0:
		return 0
	default:
		return max(wall.Sub(time.Unix(0, stamp)), 0)
	}
}
