package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
)

// expirer keeps the leader's timers: one per session (reset by keep-alives,
// which stay off the log), one per TTL lease (reset by committed Refreshes
// and adoptions) and one per revoked lease (its grace). A fired timer
// becomes an ExpireSession, ExpireLease or EndRevoked command proposed by
// the worker goroutine. Timers exist only while this node is the leader; on
// winning an election every timer is armed at a full TTL from the state, so
// failover never expires anything early.
type expirer struct {
	// handoffGrace lengthens the first timer of a TTL lease granted by a
	// hand-off: a holder on a follower learns of the grant one replication
	// delay after the leader applied it, and counts its TTL from then.
	handoffGrace time.Duration

	mu       sync.Mutex
	leader   bool
	sessions map[uint64]*sessionTimer
	leases   map[leaseKey]*leaseTimer // by (name, token): a name may have many holders
	revokes  map[leaseKey]*revokeTimer
	pending  []expiry
	wake     chan struct{} // buffered 1: pending is not empty
}

// expiry is an Expire command decided by a fired timer. It stays due, and
// is proposed again after a failure, for as long as its timer is the
// current one of this leader: until it commits (the Ended or SessionEnded
// event removes the timer), leadership is lost (follow), or a keep-alive
// or Refresh superseded it (a lease's timer re-armed).
type expiry struct {
	cmd   *fsmpb.Command
	due   func() bool // e.mu held
	tries int         // failed proposals so far
}

type sessionTimer struct {
	ttl      time.Duration
	t        *time.Timer
	expiring bool // fired: keep-alives are refused from then on
}

type leaseTimer struct {
	gen uint64
	t   *time.Timer
}

type revokeTimer struct {
	t *time.Timer
}

func newExpirer(handoffGrace time.Duration) *expirer {
	return &expirer{
		handoffGrace: handoffGrace,
		sessions:     map[uint64]*sessionTimer{},
		leases:       map[leaseKey]*leaseTimer{},
		revokes:      map[leaseKey]*revokeTimer{},
		wake:         make(chan struct{}, 1),
	}
}

// handle updates timers from applied events. Called by the bridge with its
// lock held.
func (e *expirer) handle(events []fsm.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leader {
		return
	}
	for _, ev := range events {
		switch ev.Kind {
		case fsm.EventSessionOpened:
			e.armSession(ev.Session, ev.TTL)
		case fsm.EventSessionEnded:
			if st := e.sessions[ev.Session]; st != nil {
				st.t.Stop()
				delete(e.sessions, ev.Session)
			}
		case fsm.EventGranted, fsm.EventRefreshed, fsm.EventAdopted:
			switch {
			case ev.TTL == 0:
			case ev.Kind == fsm.EventGranted && ev.Claim != ev.Generation: // handed over from the queue (generation: the grant's index)
				e.armLease(ev.Name, ev.Token, ev.Generation, ev.TTL+e.handoffGrace)
			default:
				e.armLease(ev.Name, ev.Token, ev.Generation, ev.TTL)
			}
		case fsm.EventRevoking:
			e.armRevoke(ev.Name, ev.Token, ev.TTL)
		case fsm.EventEnded:
			key := leaseKey{ev.Name, ev.Token}
			if lt := e.leases[key]; lt != nil {
				lt.t.Stop()
				delete(e.leases, key)
			}
			if rt := e.revokes[key]; rt != nil {
				rt.t.Stop()
				delete(e.revokes, key)
			}
		}
	}
}

func (e *expirer) armSession(id uint64, ttl time.Duration) {
	if old := e.sessions[id]; old != nil {
		old.t.Stop()
	}
	st := &sessionTimer{ttl: ttl}
	st.t = time.AfterFunc(ttl, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.sessions[id] != st || !e.leader {
			return
		}
		st.expiring = true
		e.enqueue(expiry{
			cmd: &fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: id}}},
			due: func() bool { return e.leader && e.sessions[id] == st },
		})
	})
	e.sessions[id] = st
}

func (e *expirer) armLease(name string, token, gen uint64, ttl time.Duration) {
	key := leaseKey{name, token}
	if old := e.leases[key]; old != nil {
		old.t.Stop()
	}
	lt := &leaseTimer{gen: gen}
	lt.t = time.AfterFunc(ttl, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.leases[key] != lt || !e.leader {
			return
		}
		e.enqueue(expiry{
			cmd: &fsmpb.Command{Op: &fsmpb.Command_ExpireLease{ExpireLease: &fsmpb.ExpireLease{Name: name, Token: token, Generation: gen}}},
			due: func() bool { return e.leader && e.leases[key] == lt },
		})
	})
	e.leases[key] = lt
}

// armRevoke arms the grace of the revoked lease (name, token): when it
// passes, the leader ends the lease (EndRevoked).
func (e *expirer) armRevoke(name string, token uint64, grace time.Duration) {
	key := leaseKey{name, token}
	if old := e.revokes[key]; old != nil {
		old.t.Stop()
	}
	rt := &revokeTimer{}
	rt.t = time.AfterFunc(grace, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.revokes[key] != rt || !e.leader {
			return
		}
		e.enqueue(expiry{
			cmd: &fsmpb.Command{Op: &fsmpb.Command_EndRevoked{EndRevoked: &fsmpb.EndRevoked{Name: name, Token: token}}},
			due: func() bool { return e.leader && e.revokes[key] == rt },
		})
	})
	e.revokes[key] = rt
}

func (e *expirer) enqueue(x expiry) {
	e.pending = append(e.pending, x)
	leasecore.Kick(e.wake)
}

// take returns and clears the pending expiries that are still due.
func (e *expirer) take() []expiry {
	e.mu.Lock()
	defer e.mu.Unlock()
	var due []expiry
	for _, x := range e.pending {
		if x.due() {
			due = append(due, x)
		}
	}
	e.pending = nil
	return due
}

// failed puts back an expiry whose proposal failed, if it is still due:
// the session's keep-alives are refused from its timer's firing on, so
// only a committed expiry ends it (while this node leads). It reports
// whether the expiry is due again.
func (e *expirer) failed(x expiry) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !x.due() {
		return false
	}
	e.enqueue(x)
	return true
}

// resetSession resets session id's timer (a keep-alive). It reports false if this node is not
// the leader, the session is unknown, or its expiry has already been
// decided: a keep-alive is acknowledged only while the session can still be
// renewed, which is what lets the client trust its own deadline (I3).
func (e *expirer) resetSession(id uint64) renewal {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.sessions[id]
	switch {
	case !e.leader:
		return renewFailed
	case st == nil || st.expiring:
		return renewGone
	}
	st.t.Reset(st.ttl)
	return renewed
}

// lead arms every timer at a full TTL (a full grace) from state (called with the bridge's
// read lock held, so no event slips between the scan and the arming), for
// the new leader.
func (e *expirer) lead(st *fsm.State) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopAll()
	e.leader = true
	for _, s := range st.Sessions() {
		e.armSession(s.ID, s.TTL)
	}
	for _, l := range st.TTLLeases() {
		e.armLease(l.Name, l.Token, l.Generation, l.TTL)
	}
	for _, r := range st.Revoked() {
		e.armRevoke(r.Name, r.Token, r.Grace)
	}
}

// follow stops every timer: only the leader expires.
func (e *expirer) follow() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leader = false
	e.stopAll()
	e.pending = nil
}

func (e *expirer) stopAll() {
	for id, st := range e.sessions {
		st.t.Stop()
		delete(e.sessions, id)
	}
	for key, lt := range e.leases {
		lt.t.Stop()
		delete(e.leases, key)
	}
	for key, rt := range e.revokes {
		rt.t.Stop()
		delete(e.revokes, key)
	}
}

// runExpiries proposes the Expire commands of fired timers (expireLocal).
func (n *Node) runExpiries() {
	defer n.wg.Done()
	expireLoop(n.stop, n.exp, n.expireLocal, n.log)
}

// expireLoop proposes every due expiry of e with propose, and proposes a
// failed one again, with backoff, for as long as it is due: until it
// commits or this node stops leading. A fired timer's expiry that is never
// committed would leave its session unrenewable (keep-alives are refused
// once the timer fired) yet alive, with its leases, while this node leads.
func expireLoop(stop <-chan struct{}, e *expirer, propose func(*fsmpb.Command) error, log *slog.Logger) {
	backoff := leasecore.Backoff{Min: retryMin, Max: retryMax}
	for {
		select {
		case <-stop:
			return
		case <-e.wake:
		}
		again := false
		for _, x := range e.take() {
			err := propose(x.cmd)
			if err == nil {
				continue
			}
			x.tries++
			if !e.failed(x) {
				log.Debug("expiry not committed; no longer due", "command", x.cmd.String(), "error", err)
				continue
			}
			again = true
			if x.tries == 1 {
				log.Warn("expiry not committed; retrying while this node leads", "command", x.cmd.String(), "error", err)
			}
		}
		if !again {
			backoff.Reset()
			continue
		}
		wait := time.NewTimer(backoff.Next())
		select {
		case <-stop:
			wait.Stop()
			return
		case <-wait.C:
		}
	}
}

// expireLocal commits an Expire command on this node, never forwarding it,
// and only while this node leads the term its timers were armed in
// (leadsTerm). A leader that stepped down drops its expiries: the next
// leader re-arms every timer at a full TTL from its election. Forwarded,
// an expiry decided under the old term could reach a leader that has
// acknowledged keep-alives since. Errors mean "try again if still due".
func (n *Node) expireLocal(cmd *fsmpb.Command) error {
	if !n.leadsTerm() {
		return nil // not ours to expire any more
	}
	ctx, cancel := context.WithTimeout(n.ctx, cleanupTimeout)
	defer cancel()
	res, _, err := n.proposeLocal(ctx, cmd)
	if err != nil {
		return fmt.Errorf("expire: %w", err)
	}
	if es := cmd.GetExpireSession(); es != nil && res.GetCode() == fsmpb.Code_CODE_OK {
		// What an operator must know: a client went silent for its TTL, and
		// its session leases pass on.
		n.log.Warn("session expired: no keep-alive for its TTL; its session leases pass on",
			"session", holderID(es.GetSession()))
		return nil
	}
	n.log.Debug("expired", "command", cmd.String(), "code", res.GetCode().String())
	return nil
}
