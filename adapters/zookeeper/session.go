package zookeeper

import (
	"context"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// sessionTimeout is the session timeout the deadlines are computed with:
// the configured one, or the negotiated one if the server lowered it.
func (l *Locker) sessionTimeout() time.Duration {
	t := l.cfg.SessionTimeout
	if n := time.Duration(l.negotiated.Load()); n > 0 && n < t {
		t = n
	}
	return t
}

// sessionMargin is SessionMargin, or half the session timeout.
func (l *Locker) sessionMargin(t time.Duration) time.Duration {
	if m := l.cfg.SessionMargin; m > 0 && m < t {
		return m
	}
	return t / 2
}

// onEvent is go-zookeeper's event callback for a connection the Locker
// made; it must not block. Events only speed things up: the prober and the
// watchdog find the same facts on their own.
func (l *Locker) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	switch ev.State {
	case zk.StateExpired:
		leasecore.Kick(l.kickWatch)
	case zk.StateHasSession:
		leasecore.Kick(l.kickProbe)
	}
}

// ack records that the server answered a request sent at sent on session
// before (== after, the session after the reply): the session cannot expire
// on the server before sent + the session timeout. quorum: the request was
// a write, so the store could also commit (lastAck).
func (l *Locker) ack(sent time.Time, before, after int64, quorum bool) {
	if before == 0 || before != after {
		return
	}
	t := l.sessionTimeout()
	d := sent.Add(t - l.sessionMargin(t))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.untracked {
		return // a late reply after Shutdown: the session is no longer tracked
	}
	if quorum && sent.After(l.lastAck) {
		l.lastAck, l.lastCause = sent, nil
	}
	if before != l.sessID {
		// A newer session than the one tracked: only if the connection is on
		// it now (a late reply from an old session must not switch back).
		if before != l.conn.SessionID() {
			return
		}
		if l.sessID != 0 {
			l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x expired", lock.ErrLost, l.sessID))
		}
		l.setSessionLocked(before)
	}
	if d.After(l.deadline) {
		wasStale := !l.deadline.After(time.Now())
		l.deadline = d
		l.broadcastLocked()
		if wasStale {
			leasecore.Kick(l.kickWatch)
		}
	}
}

// setSessionLocked makes id (0: none) the tracked session, with no
// deadline yet, and reports the session gauge's change; l.mu held.
func (l *Locker) setSessionLocked(id int64) {
	switch {
	case l.sessID == 0 && id != 0:
		l.sink.Sessions(+1)
	case l.sessID != 0 && id == 0:
		l.sink.Sessions(-1)
	}
	l.sessID, l.deadline = id, time.Time{}
}

// confirmed reports whether the tracked session's deadline is ahead, and
// returns the channel the next acknowledgement or session change closes.
func (l *Locker) confirmed() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessID != 0 && time.Now().Before(l.deadline), l.fresh
}

// awaitConfirmation asks for a probe now and waits until fresh (from
// confirmed or sessionLease) closes: then it returns errAgain, for the
// caller's retry to look again. If ctx ends first it returns ctx's error.
func (l *Locker) awaitConfirmation(ctx context.Context, fresh <-chan struct{}) error {
	leasecore.Kick(l.kickProbe)
	select {
	case <-fresh:
		return errAgain
	case <-ctx.Done():
		return ctxError(ctx)
	}
}

// broadcastLocked wakes everyone waiting for a session change; l.mu held.
func (l *Locker) broadcastLocked() {
	close(l.fresh)
	l.fresh = make(chan struct{})
}

// loseSessionLocked ends every session lease of the tracked session with
// why and schedules the deletion of their nodes; l.mu held.
func (l *Locker) loseSessionLocked(why error) {
	lost := 0
	for le := range l.leases {
		if le.ttl == 0 && le.session == l.sessID {
			// Logged before Done closes, so that whoever reacts to Done
			// finds the record.
			l.log.Warn("lease lost", "name", le.Name(), "token", le.Token(), "holder", l.id, "reason", why.Error())
			le.endLocked(why)
			l.orphans[le.path] = orphan{path: le.path, session: le.session}
			lost++
		}
	}
	if lost > 0 {
		l.log.Warn("session lost: its session leases end", "session", fmt.Sprintf("%#x", l.sessID), "leases", lost, "reason", why.Error())
	}
}

// checkSessionLocked ends the session leases if the session is gone or its
// deadline has passed, and returns when to look again; l.mu held.
func (l *Locker) checkSessionLocked(now time.Time) time.Time {
	if cur := l.conn.SessionID(); l.sessID != 0 && cur != l.sessID {
		l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x expired", lock.ErrLost, l.sessID))
		l.setSessionLocked(0)
		l.broadcastLocked()
	}
	if l.deadline.IsZero() {
		return time.Time{}
	}
	if !now.Before(l.deadline) {
		l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x not confirmed for the session timeout %v minus margin; the server may have expired it",
			lock.ErrLost, l.sessID, l.sessionTimeout()))
		return time.Time{}
	}
	return l.deadline
}

// watchdog ends session leases at their deadline.
func (l *Locker) watchdog() {
	defer l.bg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.mu.Lock()
		next := l.checkSessionLocked(time.Now())
		l.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-l.kickWatch:
		case <-l.base.Done():
			return
		}
	}
}
