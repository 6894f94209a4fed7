package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// A client's session: opened at NewLocker (openSession), renewed by the
// keep-alive loop off the log (keepAlive, renewSession, ackKeepAlive), and
// declared lost when its deadline passes or the store expired it
// (sessionLost, signalLost), after which the loop opens the next one.

// ErrSessionExpired is wrapped (with lock.ErrLost) by the errors of calls
// whose session the store expired. The client opens a new session; a retry
// uses it.
var ErrSessionExpired = errors.New("node: session expired")

// errSessionLost ends the leases and fails the waiters of a session the
// client declared lost or the store expired.
var errSessionLost = fmt.Errorf("%w: %w", lock.ErrLost, ErrSessionExpired)

// driftMargin is how much earlier than the store a holder considers its
// lease over: clocks run at slightly different rates and timers fire late.
func driftMargin(ttl time.Duration) time.Duration { return ttl / 50 }

// newSessionID returns a random non-zero session ID.
func newSessionID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// openSession opens a new session and makes it current. Every session the
// client ever had stays registered with the node until the client closes,
// so events about leases granted under an earlier session still reach it.
func (c *client) openSession(ctx context.Context) error {
	id := newSessionID()
	if err := c.n.register(id, c); err != nil {
		return err
	}
	res, err := c.n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: id}, TtlNs: int64(c.ttl), Node: c.n.cfg.ID,
	}}})
	if err == nil && res.GetCode() != fsmpb.Code_CODE_OK {
		err = fmt.Errorf("node: open session: %s", res.GetCode())
	}
	if err != nil {
		c.n.unregisterSession(id)
		return err
	}
	c.mu.Lock()
	c.sess = id
	// A signal still pending was about an earlier session (every kick
	// checks the current session under mu): catch-up can apply the
	// ExpireSession of the old one while this open is in flight. Left
	// there, it would declare the new session lost at once.
	select {
	case <-c.lost:
	default:
	}
	c.mu.Unlock()
	c.ready.set(true)
	return nil
}

// keepAlive renews the session every TTL/3 and watches the deadline the
// holder can trust: the send time of the last acknowledged renewal plus the
// TTL, minus the drift margin. The leader expires the session no earlier
// than its receive time of that renewal plus the TTL, so when the deadline
// passes without an acknowledgement the client ends its session leases
// before the store can grant them elsewhere (I3).
func (c *client) keepAlive(sent time.Time) {
	defer close(c.stopped)
	tick := time.NewTicker(c.ttl / 3)
	defer tick.Stop()
	deadline := sent.Add(c.ttl - driftMargin(c.ttl))
	watch := time.NewTimer(time.Until(deadline))
	defer watch.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			c.mu.Lock()
			id, renew, lost := c.sess, c.renew, c.lostSessions[c.sess]
			c.mu.Unlock()
			if lost {
				// A reopen failed: the watch retries it. Renewing the
				// session declared lost (the store may still know it)
				// would push the watch out and never reopen.
				continue
			}
			sent := time.Now()
			// A renewal may not outlast the deadline: the watch below must
			// fire on time even when the leader does not answer.
			if timeout := min(c.ttl/3, time.Until(deadline)); timeout > 0 && renew(id, timeout) {
				deadline = sent.Add(c.ttl - driftMargin(c.ttl))
				watch.Reset(time.Until(deadline))
			}
			// Not acknowledged: the deadline timer decides, unless the
			// store expires the session first.
			continue
		case <-c.lost:
		case <-watch.C:
		}
		c.sessionLost()
		sent := time.Now()
		// Each attempt is bounded: an RPC to a leader that stopped
		// answering (a black hole: connections open, nothing comes back)
		// waits for its ctx, and the calls waiting for the session wait
		// behind it. One that may have committed leaves a session nobody
		// renews; it expires.
		octx, cancel := context.WithTimeout(c.ctx, c.ttl)
		err := c.openSession(octx)
		cancel()
		c.mu.Lock()
		c.reopenErr = err
		c.mu.Unlock()
		if err != nil {
			c.n.log.Warn("reopen session failed", "error", err)
			deadline = time.Now().Add(c.ttl / 3)
			watch.Reset(c.ttl / 3)
			continue
		}
		deadline = sent.Add(c.ttl - driftMargin(c.ttl))
		watch.Reset(time.Until(deadline))
	}
}

// sessionLost ends every session lease and fails every waiter of the
// current session: the store has expired it, or will before it could grant
// those names elsewhere.
func (c *client) sessionLost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// Close came first: it failed the waiters, ended the leases and
		// opened the gate so that calls answer ErrClosed. Closing the gate
		// again would leave them waiting for a session nobody opens.
		return
	}
	c.lostSessions[c.sess] = true
	c.ready.set(false)
	c.n.log.Warn("session lost: no keep-alive acknowledged within its TTL; its session leases end",
		"session", holderID(c.sess), "leases", len(c.leases))
	for _, l := range c.leases {
		if l.ttl == 0 {
			l.end(errSessionLost)
		}
	}
	for seq, w := range c.waiters {
		w.fail(errSessionLost)
		delete(c.waiters, seq)
	}
	for seq, w := range c.grants {
		if w.owned { // a client session's claim does not end with the stream's session
			w.fail(errSessionLost)
			delete(c.grants, seq)
		}
	}
}

// signalLost tells the keep-alive loop that the store no longer knows
// session id, if it is still the current one.
func (c *client) signalLost(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == id && !c.closed {
		c.ready.set(false) // callers wait for the replacement, not spin on the dead one
		leasecore.Kick(c.lost)
	}
}

// renewSession sends one keep-alive for a session of this node's own to
// the leader, wherever it is, and gives up after timeout.
func (n *Node) renewSession(id uint64, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	out, _, _ := n.renewOnce(ctx, id, nil)
	return out == renewed
}

// ackKeepAlive renews session id on this node, the leader, and reports
// whether the client may count on it, with the session's TTL. The session
// must be one the state knows, with secret its own (none for a node's
// session; DESIGN.md, "Client sessions and lease keys"), else it is gone.
// A new leader first waits for its term barrier (its timers are armed
// then). After resetting the timer it confirms leadership with a quorum: a
// deposed leader that has not noticed yet must not acknowledge, because
// the new leader's timers started at its election and a late
// acknowledgement would move the client's deadline past them (I3). Once a
// quorum confirmed this leader after the keep-alive arrived, any later
// leader is elected after that, and re-arms the session at a full TTL from
// then.
func (n *Node) ackKeepAlive(ctx context.Context, id uint64, secret []byte) (renewal, time.Duration) {
	if n.leading.wait(ctx) != nil || ctx.Err() != nil {
		return renewFailed, 0
	}
	var ttl time.Duration
	n.bridge.read(func(st *fsm.State) {
		if st.Renewable(id, secret) {
			ttl = st.SessionTTL(id)
		}
	})
	if ttl == 0 {
		return renewGone, 0
	}
	if out := n.exp.resetSession(id); out != renewed {
		return out, 0
	}
	if n.raft.VerifyLeader().Error() != nil || !n.leadsTerm() {
		return renewFailed, 0
	}
	return renewed, ttl
}
