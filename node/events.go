package node

import (
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// How applied events reach the clients of this node: the bridge hands every
// batch's events to Node.dispatch (and a restored state to Node.reconcile)
// under its write lock; the Node routes them by session to the client that
// registered it, whose handle (or reconcile) answers waiters and ends
// leases. Nothing here may block.

// register routes the events of session id to c. It refuses once the node
// closes its clients (lock.ErrClosed).
func (n *Node) register(id uint64, c *client) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return lock.ErrClosed
	}
	n.clients[id] = c
	return nil
}

// unregisterSession stops the events of session id (its open failed).
func (n *Node) unregisterSession(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.clients, id)
}

// unregister stops the events of every session c had (c is closed).
func (n *Node) unregister(c *client) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, cl := range n.clients {
		if cl == c {
			delete(n.clients, id)
		}
	}
}

// dispatch routes applied events to the expirer and to the local clients:
// each to the client of its session, and an Adopted event also to the
// client of the session that held the lease before. It runs in the FSM
// goroutine with the bridge's write lock held: it must not block.
func (n *Node) dispatch(events []fsm.Event) {
	n.exp.handle(events)
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, ev := range events {
		c := n.clients[routeOf(ev)] // a client session's claim: its stream's client waits for it
		if c != nil {
			c.handle(ev)
		}
		if ev.Kind == fsm.EventAdopted {
			if prev := n.clients[ev.Previous]; prev != nil && prev != c {
				prev.handle(ev)
			}
		}
	}
}

// routeOf is the session whose request an event's claim answers: its
// stream for a client session's claim, else its own session.
func routeOf(ev fsm.Event) uint64 {
	if ev.Stream != 0 {
		return ev.Stream
	}
	return ev.Session
}

// reconcile runs after a snapshot replaced the state (bridge lock held):
// the events of the entries the snapshot covers were never seen here, so
// every local client checks its leases and waiters against the new state.
func (n *Node) reconcile(st *fsm.State) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	seen := map[*client]bool{}
	for _, c := range n.clients {
		if !seen[c] {
			seen[c] = true
			c.reconcile(st)
		}
	}
}

// handle applies one event about a session of this client. It runs in the
// FSM goroutine and must not block.
func (c *client) handle(ev fsm.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.grants[ev.Seq]; w != nil && w.session == routeOf(ev) {
		c.handleGrant(ev.Seq, w, ev)
		return
	}
	switch ev.Kind {
	case fsm.EventGranted:
		w := c.waiters[ev.Seq]
		if w == nil || w.session != ev.Session {
			c.grantedToNobody(ev)
			return
		}
		base, waited := time.Now(), time.Duration(0)
		if ev.Claim == ev.Generation {
			base = w.sent // granted by its own Acquire entry (a grant's generation is its index)
		} else {
			waited = time.Since(w.sent) // granted from the queue
		}
		c.n.metrics.Granted(kindOf(ev.TTL), waited)
		l := c.newLease(ev.Name, ev.Token, ev.Session, ev.TTL, base)
		l.slot = ev.Slot
		if ev.TTL == 0 && c.lostSessions[ev.Session] {
			// Granted to a session this client already gave up: nothing
			// renews it, so the lease is over before it starts.
			l.end(errSessionLost)
		}
		w.claim = ev.Claim
		w.ch <- l // buffered, and a seq is granted once
	case fsm.EventEnded:
		if l := c.leases[leaseKey{ev.Name, ev.Token}]; l != nil {
			l.end(reasonErr(ev.Reason))
		}
	case fsm.EventWithdrawn:
		if w := c.waiters[ev.Seq]; w != nil && ev.Reason != fsm.ReasonReleased {
			delete(c.waiters, ev.Seq)
			w.fail(reasonErr(ev.Reason))
		}
	case fsm.EventSessionEnded:
		if ev.Session == c.sess && ev.Reason == fsm.ReasonLost {
			leasecore.Kick(c.lost)
		}
	case fsm.EventRevoking:
		if l := c.leases[leaseKey{ev.Name, ev.Token}]; l != nil && l.session == ev.Session {
			c.revoked(l)
		}
	case fsm.EventAdopted:
		if l := c.leases[leaseKey{ev.Name, ev.Token}]; l != nil && l.session == ev.Previous {
			c.adoptedAway(l)
		}
	}
}

// revoked ends l, which the store marked revoked, with lock.ErrRevoked and
// releases it in the store by token, the holder's acknowledgement that
// ends the revoke (DESIGN.md, "Operating a lock"); c.mu held.
func (c *client) revoked(l *lease) {
	l.end(lock.ErrRevoked)
	l.releaseInStoreLocked(func() {
		c.n.log.Warn("lease revoked", "name", l.Name(), "token", l.Token(), "holder", holderID(l.session))
	})
}

// adoptedAway ends l, which another session adopted, with lock.ErrAdopted;
// nothing of it may reach the store: its token is the adopter's lease now.
// c.mu held.
func (c *client) adoptedAway(l *lease) {
	l.cleaning.Store(true)
	l.end(lock.ErrAdopted)
}

// grantedToNobody withdraws a grant that reaches the client with no
// waiter for it: its Acquire gave up (ctx ended, session lost, outcome
// unknown) and nobody will ever hold a Lease for it; c.mu held. Close
// withdraws it with the session instead.
func (c *client) grantedToNobody(ev fsm.Event) {
	if c.closed {
		return
	}
	g := gaveUp{name: ev.Name, claim: ev.Claim, session: ev.Session, ttl: ev.TTL > 0}
	c.backgroundLocked(func() { c.withdraw(g) })
}

// reconcile checks the client against a state installed from a snapshot,
// whose entries' events it never saw; bridge lock held.
func (c *client) reconcile(st *fsm.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, l := range c.leases {
		switch h, held := st.Lock(key.name).Lease(key.token); {
		case !held:
			l.end(fmt.Errorf("%w: ended while this node was catching up", lock.ErrLost))
		case h.Session != l.session:
			c.adoptedAway(l)
		case h.Revoked:
			c.revoked(l)
		}
	}
	for seq, w := range c.waiters {
		c.reconcileWaiter(st, seq, w)
	}
	for seq, w := range c.grants {
		c.reconcileGrant(st, seq, w)
	}
	if c.sess != 0 && !st.HasSession(c.sess) {
		leasecore.Kick(c.lost)
	}
}

// reconcileWaiter delivers a grant or a withdrawal of a queued claim that
// the state shows but no event announced; c.mu held.
func (c *client) reconcileWaiter(st *fsm.State, seq uint64, w *waiter) {
	if w.claim == 0 {
		return // not queued yet: its own result will tell
	}
	if c.waiters[seq] != w {
		return // already answered (granted, withdrawn, or its session lost)
	}
	li, held := st.Lock(w.name).LeaseOfClaim(w.claim)
	switch {
	case held:
		if c.leases[leaseKey{w.name, li.Token}] == nil && len(w.ch) == 0 {
			base := time.Now() // a hand-off: the leader's first timer has a grace
			if li.Token == w.claim || li.Generation == w.claim {
				// Its own Acquire's grant: counted from the send. (From
				// protocol 4 a floored grant's token is above its index;
				// its generation is that index until a refresh.)
				base = w.sent
			}
			l := c.newLease(w.name, li.Token, li.Session, li.TTL, base)
			l.slot = li.Slot
			if li.TTL == 0 && c.lostSessions[li.Session] {
				l.end(errSessionLost)
			}
			w.ch <- l // buffered, empty: cannot block
		}
	case !st.Queued(w.name, w.claim) && len(w.ch) == 0:
		delete(c.waiters, seq)
		w.fail(fmt.Errorf("%w: withdrawn while this node was catching up", lock.ErrLost))
	}
}

func reasonErr(r fsm.EndReason) error {
	switch r {
	case fsm.ReasonReleased, fsm.ReasonClosed:
		return lock.ErrReleased
	case fsm.ReasonExpired:
		return lock.ErrExpired
	case fsm.ReasonRevoked:
		return lock.ErrRevoked
	default:
		return errSessionLost
	}
}
