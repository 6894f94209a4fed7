package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// ErrSessionExpired is wrapped (with lock.ErrLost) by the errors of calls
// whose session the store expired. The client opens a new session; a retry
// uses it.
var ErrSessionExpired = errors.New("node: session expired")

// errSessionLost ends the leases and fails the waiters of a session the
// client declared lost or the store expired.
var errSessionLost = fmt.Errorf("%w: %w", lock.ErrLost, ErrSessionExpired)

// cleanupTimeout bounds the commands a client makes after its caller gave
// up (withdrawing a cancelled Acquire, closing a session).
const cleanupTimeout = 5 * time.Second

// driftMargin is how much earlier than the store a holder considers its
// lease over: clocks run at slightly different rates and timers fire late.
func driftMargin(ttl time.Duration) time.Duration { return ttl / 50 }

// client is one lock.Locker: a session on the node, the waiters of its
// blocked Acquire calls and its granted leases. Applied events reach it
// through handle, in the FSM goroutine.
type client struct {
	n *Node

	mu       sync.Mutex
	sess     uint64 // current session
	ttl      time.Duration
	seq      uint64
	inflight map[uint64]struct{} // seqs proposed and not yet answered
	window   *sync.Cond          // on mu: signalled when inflight shrinks
	waiters  map[uint64]*waiter  // by seq of the Acquire
	leases   map[leaseKey]*lease
	closed   bool
	// ready is open while the current session is believed alive.
	ready *gate
	// lostSessions are earlier sessions this client declared lost.
	lostSessions map[uint64]bool

	// renew sends one keep-alive for a session and reports whether the
	// leader acknowledged it.
	renew func(session uint64, timeout time.Duration) bool

	lost    chan struct{}   // buffered 1: the store expired the session
	ctx     context.Context // cancelled when the keep-alive must stop
	cancel  context.CancelFunc
	stop    <-chan struct{} // ctx.Done()
	stopped chan struct{}
}

type leaseKey struct {
	name  string
	token uint64
}

type waiter struct {
	name  string
	claim uint64 // set once the Acquire is queued
	sent  time.Time
	ch    chan *lease // buffered 1: the grant
	errc  chan error  // buffered 1: withdrawn or closed
}

var _ lock.Locker = (*client)(nil)

func (n *Node) newClient(ctx context.Context) (*client, error) {
	c := &client{
		n:            n,
		ttl:          n.cfg.SessionTTL,
		inflight:     map[uint64]struct{}{},
		waiters:      map[uint64]*waiter{},
		leases:       map[leaseKey]*lease{},
		lostSessions: map[uint64]bool{},
		ready:        newGate(),
		lost:         make(chan struct{}, 1),
		stopped:      make(chan struct{}),
		renew:        n.renewSession,
	}
	c.window = sync.NewCond(&c.mu)
	c.ctx, c.cancel = context.WithCancel(n.ctx)
	c.stop = c.ctx.Done()
	// The client is registered with the node before its session commits,
	// so a node that stops meanwhile abandons it (markClosed): that
	// cancels c.ctx, which must end the open too, and waits for c.stopped,
	// which must close although no keep-alive will run.
	octx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(c.ctx, stop)()
	sent := time.Now()
	if err := c.openSession(octx); err != nil {
		c.cancel()
		close(c.stopped)
		if c.isClosed() {
			return nil, lock.ErrClosed
		}
		return nil, err
	}
	go c.keepAlive(sent)
	return c, nil
}

// openSession opens a new session and makes it current. Every session the
// client ever had stays registered with the node until the client closes,
// so events about leases granted under an earlier session still reach it.
func (c *client) openSession(ctx context.Context) error {
	id := newSessionID()
	c.n.mu.Lock()
	if c.n.closed {
		c.n.mu.Unlock()
		return lock.ErrClosed
	}
	c.n.clients[id] = c
	c.n.mu.Unlock()

	res, err := c.n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: id}, TtlNs: int64(c.ttl), Node: c.n.cfg.ID,
	}}})
	if err == nil && res.GetCode() != fsmpb.Code_CODE_OK {
		err = fmt.Errorf("node: open session: %s", res.GetCode())
	}
	if err != nil {
		c.n.mu.Lock()
		delete(c.n.clients, id)
		c.n.mu.Unlock()
		return err
	}
	c.mu.Lock()
	c.sess = id
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
			id, renew := c.sess, c.renew
			c.mu.Unlock()
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
		if err := c.openSession(c.ctx); err != nil {
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
	c.lostSessions[c.sess] = true
	c.ready.set(false)
	for _, l := range c.leases {
		if l.ttl == 0 {
			l.end(errSessionLost)
		}
	}
	for seq, w := range c.waiters {
		fail(w, errSessionLost)
		delete(c.waiters, seq)
	}
}

// handle applies one event about a session of this client. It runs in the
// FSM goroutine and must not block.
func (c *client) handle(ev fsm.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Kind {
	case fsm.EventGranted:
		w := c.waiters[ev.Seq]
		base := time.Now()
		if w != nil && ev.Claim == ev.Token {
			base = w.sent // granted by its own Acquire entry
		}
		l := c.newLease(ev.Name, ev.Token, ev.TTL, base)
		if ev.TTL == 0 && c.lostSessions[ev.Session] {
			// Granted to a session this client already gave up: nothing
			// renews it, so the lease is over before it starts.
			l.end(errSessionLost)
		}
		if w != nil {
			w.ch <- l // buffered, and a seq is granted once
		}
		// With no waiter, a Cancel for this claim is in flight and will
		// end the lease.
	case fsm.EventEnded:
		if l := c.leases[leaseKey{ev.Name, ev.Token}]; l != nil {
			l.end(reasonErr(ev.Reason))
		}
	case fsm.EventWithdrawn:
		if w := c.waiters[ev.Seq]; w != nil && ev.Reason != fsm.ReasonReleased {
			delete(c.waiters, ev.Seq)
			fail(w, reasonErr(ev.Reason))
		}
	case fsm.EventSessionEnded:
		if ev.Session == c.sess && ev.Reason == fsm.ReasonLost {
			leasecore.Kick(c.lost)
		}
	}
}

// reconcile checks the client against a state installed from a snapshot,
// whose entries' events it never saw; bridge lock held.
func (c *client) reconcile(st *fsm.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, l := range c.leases {
		if li := st.Lock(key.name); !li.Held || li.Token != key.token {
			l.end(fmt.Errorf("%w: ended while this node was catching up", lock.ErrLost))
		}
	}
	for seq, w := range c.waiters {
		c.reconcileWaiter(st, seq, w)
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
	li := st.Lock(w.name)
	switch {
	case li.Held && li.Claim == w.claim:
		if c.leases[leaseKey{w.name, li.Token}] == nil && len(w.ch) == 0 {
			w.ch <- c.newLease(w.name, li.Token, li.TTL, time.Now()) // buffered, empty: cannot block
		}
	case !st.Queued(w.name, w.claim) && len(w.ch) == 0:
		delete(c.waiters, seq)
		fail(w, fmt.Errorf("%w: withdrawn while this node was catching up", lock.ErrLost))
	}
}

func reasonErr(r fsm.EndReason) error {
	switch r {
	case fsm.ReasonReleased, fsm.ReasonClosed:
		return lock.ErrReleased
	case fsm.ReasonExpired:
		return lock.ErrExpired
	default:
		return errSessionLost
	}
}

// request proposes a command of this client's current session with a fresh
// sequence number.
func (c *client) request(ctx context.Context, build func(req *fsmpb.Request) *fsmpb.Command) (*fsmpb.Result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, lock.ErrClosed
	}
	req := c.nextRequest()
	c.mu.Unlock()
	res, err := c.n.propose(ctx, build(req))
	c.done(req.Seq)
	return res, err
}

// maxWindow bounds how far a client's newest sequence number may run ahead
// of its oldest unanswered one. The state machine caches at most
// fsm.MaxCachedResults results per session and forgets the lowest beyond
// that; keeping the window below it means a slow request is never
// forgotten before it is applied.
const maxWindow = fsm.MaxCachedResults / 2

// nextRequest allocates a sequence number, waiting while the window is
// full; c.mu held.
func (c *client) nextRequest() *fsmpb.Request {
	for {
		oldest := c.seq + 1
		for s := range c.inflight {
			oldest = min(oldest, s)
		}
		if c.seq+1-oldest < maxWindow {
			c.seq++
			c.inflight[c.seq] = struct{}{}
			return &fsmpb.Request{Session: c.sess, Seq: c.seq, AckedBelow: oldest}
		}
		c.window.Wait()
	}
}

func (c *client) done(seq uint64) {
	c.mu.Lock()
	delete(c.inflight, seq)
	c.mu.Unlock()
	c.window.Broadcast()
}

func (c *client) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, name, false, opts)
}

func (c *client) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, name, true, opts)
}

func (c *client) acquire(ctx context.Context, name string, try bool, opts []lock.Option) (lock.Lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	for {
		// A call made while the client replaces an expired session waits
		// for the new one instead of failing: no lease was lost by it.
		if err := c.ready.wait(ctx); err != nil {
			return nil, fmt.Errorf("acquire %q: waiting for a new session: %w", name, err)
		}
		l, err := c.acquireOnce(ctx, name, try, o)
		if errors.Is(err, ErrSessionExpired) && ctx.Err() == nil && !c.isClosed() {
			continue // its claim is gone with the session; claim again under the new one
		}
		return l, err
	}
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// acquireOnce makes one claim under the current session.
func (c *client) acquireOnce(ctx context.Context, name string, try bool, o lock.Options) (lock.Lease, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, lock.ErrClosed
	}
	req := c.nextRequest()
	w := &waiter{sent: time.Now(), ch: make(chan *lease, 1), errc: make(chan error, 1)}
	c.waiters[req.Seq] = w
	c.mu.Unlock()

	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: name, Owner: o.Owner, TtlNs: int64(o.TTL), Try: try,
	}}}
	res, err := c.n.propose(ctx, cmd)
	if err != nil {
		if errors.Is(err, errAmbiguous) {
			c.resolve(ctx, name, cmd)
		}
		c.done(req.Seq)
		c.dropWaiter(req.Seq)
		return nil, err
	}
	c.done(req.Seq)
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED:
		c.dropWaiter(req.Seq)
		select {
		case l := <-w.ch:
			if err := l.Err(); err != nil { // granted to a session declared lost
				c.withdraw(ctx, name, res.GetClaim())
				return nil, err
			}
			return l, nil
		case err := <-w.errc:
			// The client declared the request's session lost while the
			// request was in flight: a grant to it cannot be vouched for.
			c.withdraw(ctx, name, res.GetClaim())
			return nil, err
		default:
			return nil, fmt.Errorf("node: grant of %q at %d without its event", name, res.GetToken())
		}
	case fsmpb.Code_CODE_QUEUED:
		c.n.bridge.read(func(st *fsm.State) {
			c.mu.Lock()
			defer c.mu.Unlock()
			w.name, w.claim = name, res.GetClaim()
			c.reconcileWaiter(st, req.Seq, w) // a snapshot may have covered the grant
		})
		return c.wait(ctx, name, req.Seq, res.GetClaim(), w)
	case fsmpb.Code_CODE_HELD:
		c.dropWaiter(req.Seq)
		return nil, fmt.Errorf("%w: %q", lock.ErrHeld, name)
	default:
		c.dropWaiter(req.Seq)
		if res.GetCode() == fsmpb.Code_CODE_UNKNOWN_SESSION {
			c.signalLost(req.Session)
		}
		return nil, codeErr(res.GetCode(), name)
	}
}

// signalLost tells the keep-alive loop that the store no longer knows
// session id, if it is still the current one.
func (c *client) signalLost(id uint64) {
	c.mu.Lock()
	current := c.sess == id
	c.mu.Unlock()
	if current {
		c.ready.set(false) // callers wait for the replacement, not spin on the dead one
		leasecore.Kick(c.lost)
	}
}

func codeErr(code fsmpb.Code, name string) error {
	switch code {
	case fsmpb.Code_CODE_UNKNOWN_SESSION:
		return errSessionLost
	case fsmpb.Code_CODE_NOT_HELD:
		return fmt.Errorf("%w: %q", lock.ErrNotHeld, name)
	case fsmpb.Code_CODE_INVALID:
		return fmt.Errorf("%w: rejected by the state machine", lock.ErrInvalidOption)
	default:
		return fmt.Errorf("node: unexpected result %s for %q", code, name)
	}
}

// wait blocks a queued Acquire until its grant, its withdrawal, or ctx's
// end; on ctx's end it withdraws the claim (releasing it if the grant won
// the race) before returning.
func (c *client) wait(ctx context.Context, name string, seq, claim uint64, w *waiter) (lock.Lease, error) {
	select {
	case l := <-w.ch:
		c.dropWaiter(seq)
		if err := l.Err(); err != nil { // granted to a session declared lost
			c.withdraw(ctx, name, claim)
			return nil, err
		}
		return l, nil
	case err := <-w.errc:
		if !errors.Is(err, lock.ErrClosed) {
			// Session lost: the claim may still be queued under it (the
			// store has not expired it yet); take it out.
			c.withdraw(ctx, name, claim)
		}
		return nil, err
	case <-ctx.Done():
	}
	c.withdraw(ctx, name, claim)
	c.dropWaiter(seq)
	return nil, fmt.Errorf("acquire %q: %w", name, ctx.Err())
}

// withdraw cancels claim: withdrawn if queued, released if granted. It runs
// after the caller gave up, bounded by cleanupTimeout; if it fails, the
// claim goes with the session (Close or expiry).
func (c *client) withdraw(ctx context.Context, name string, claim uint64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := c.request(cctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: req, Name: name, Claim: claim}}}
	})
	if err != nil && !errors.Is(err, lock.ErrClosed) {
		c.n.log.Warn("withdrawing an abandoned acquire failed; the session's Close or expiry will", "name", name, "error", err)
	}
}

// resolve settles an Acquire whose outcome is unknown (the caller gave up
// while a forward was in flight): it proposes the very same request again,
// which the state machine answers from its de-duplication cache without a
// second effect, and withdraws the claim if there was one.
func (c *client) resolve(ctx context.Context, name string, cmd *fsmpb.Command) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	res, err := c.n.propose(cctx, cmd)
	if err != nil {
		if !errors.Is(err, lock.ErrClosed) {
			c.n.log.Warn("resolving an abandoned acquire failed; the session's Close or expiry will clear it", "name", name, "error", err)
		}
		return
	}
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED:
		c.withdraw(ctx, name, res.GetClaim())
	}
}

func (c *client) dropWaiter(seq uint64) {
	c.mu.Lock()
	delete(c.waiters, seq)
	c.mu.Unlock()
}

// Close closes the session: the store ends every lease of this client and
// withdraws its queued claims in one entry. Blocked Acquire calls return
// ErrClosed.
func (c *client) Close() error {
	sess, seq, ok := c.markClosed()
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	// End the leases here first: closing the session may take until
	// cleanupTimeout (no quorum), and the keep-alive that backed them has
	// stopped, so the holder must stop trusting them now (I3).
	c.endLeases(lock.ErrReleased)
	var err error
	if sess != 0 {
		_, err = c.n.propose(ctx, &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
			Req: &fsmpb.Request{Session: sess, Seq: seq},
		}}})
	}
	c.unregister()
	if errors.Is(err, lock.ErrClosed) {
		err = nil
	}
	return err
}

// abandon stops the client without telling the store, as a crash would.
func (c *client) abandon() {
	if _, _, ok := c.markClosed(); ok {
		c.endLeases(fmt.Errorf("%w: node stopped", lock.ErrLost))
		c.unregister()
	}
}

// markClosed stops new calls, fails waiters and stops the keep-alive. It
// returns the session and a fresh sequence number for closing it.
func (c *client) markClosed() (sess, seq uint64, ok bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, 0, false
	}
	c.closed = true
	for seq, w := range c.waiters {
		fail(w, lock.ErrClosed)
		delete(c.waiters, seq)
	}
	c.seq++
	sess, seq = c.sess, c.seq
	c.mu.Unlock()
	c.ready.set(true) // let calls waiting for a session through, to ErrClosed
	c.cancel()
	<-c.stopped
	return sess, seq, true
}

// endLeases ends every lease the client still holds.
func (c *client) endLeases(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.leases {
		l.end(why)
	}
}

// unregister stops events for every session the client had.
func (c *client) unregister() {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	for id, cl := range c.n.clients {
		if cl == c {
			delete(c.n.clients, id)
		}
	}
}

// fail hands err to a waiter unless it already has an answer. It never
// blocks: callers hold the client's lock, some the bridge's too.
func fail(w *waiter, err error) {
	select {
	case w.errc <- err:
	default:
	}
}
