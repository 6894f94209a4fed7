package redis

import (
	"context"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// StopRenewals makes l behave like a holder process that stopped renewing:
// every later renewal, Release and Refresh fails (its background contexts
// are cancelled), while
// l keeps its leases' local deadlines.
func StopRenewals(l *Locker) {
	if l.one != nil {
		l.one.bgCancel()
		return
	}
	for _, c := range l.many.subs {
		c.bgCancel()
	}
}

// Rounds returns how many rounds of votes a Redlock Locker has asked for
// (0 for a single primary).
func Rounds(l *Locker) int64 {
	if l.many == nil {
		return 0
	}
	return l.many.rounds.Load()
}

// Deafen makes a single-primary Locker stop hearing its wake-up channel
// (waiters fall back to their backoff; revoke and adopt messages are
// lost), as when pub/sub drops a message: what the holder learns then, it
// learns from the answers of its own calls. Call it before StopRenewals
// (which does not stop the subscriber from reading) to make a Locker that
// neither hears nor answers.
func Deafen(l *Locker) error {
	<-l.one.subReady
	return l.one.ps.Unsubscribe(l.one.bgCtx, l.one.wakePrefix+l.one.id)
}

// ReleaseScriptHash is the SHA1 that EVALSHA names the release script by.
var ReleaseScriptHash = releaseScript.Hash()

// LeaderScriptHash is the SHA1 that EVALSHA names the leader script by.
var LeaderScriptHash = leaderScript.Hash()

// GiveBack runs the giveback script for claim on name without requeueing
// it, as a Redlock vote lost on the majority does.
func GiveBack(l *Locker, name, claim string) {
	l.one.giveBack(context.Background(), name, claim, 0)
}

// LocalDeadline is the holder's local deadline of a single primary's
// lease (I3: its Done closes when it passes), as last extended.
func LocalDeadline(l lock.Lease) time.Time {
	switch l := l.(type) {
	case permit:
		return l.dl.At()
	case *term:
		return l.dl.At()
	}
	return l.(*lease).dl.At()
}

// PartDeadlines are the local deadlines of a Redlock lease's per-primary
// parts, by primary (zero where the primary did not grant).
func PartDeadlines(l lock.Lease) []time.Time {
	ml := l.(*multiLease)
	out := make([]time.Time, len(ml.subs))
	for i, sub := range ml.subs {
		if sub != nil {
			out[i] = sub.dl.At()
		}
	}
	return out
}
