package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// waiter is a blocked Acquire. It is registered under the seq of its
// request before the request is proposed, so the event that grants the
// claim finds it, whichever entry that is.
type waiter struct {
	name    string
	session uint64 // of the Acquire
	ttl     bool   // a TTL claim
	claim   uint64 // set once the Acquire is answered, or by its grant
	sent    time.Time
	ch      chan *lease // buffered 1: the grant
	errc    chan error  // buffered 1: withdrawn or closed
}

// gaveUp describes w's claim for its clean-up.
func (w *waiter) gaveUp() gaveUp {
	return gaveUp{name: w.name, claim: w.claim, session: w.session, ttl: w.ttl}
}

// fail hands err to w unless it already has an answer. It never blocks:
// callers hold the client's lock, some the bridge's too.
func (w *waiter) fail(err error) {
	select {
	case w.errc <- err:
	default:
	}
}

func (c *client) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.mutex(ctx, name, false, opts)
}

func (c *client) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.mutex(ctx, name, true, opts)
}

func (c *client) mutex(ctx context.Context, name string, try bool, opts []lock.Option) (lock.Lease, error) {
	l, err := c.measured(ctx, name, try, shape{}, opts)
	if err != nil {
		return nil, err // not a nil *lease in a lock.Lease
	}
	return l, nil
}

// measured is acquire, reported to the node's metrics when it returns.
func (c *client) measured(ctx context.Context, name string, try bool, sh shape, opts []lock.Option) (*lease, error) {
	start := time.Now()
	l, err := c.acquire(ctx, name, try, sh, opts)
	c.n.metrics.Acquire(try, metrics.OutcomeOf(err), time.Since(start))
	return l, err
}

// acquire claims name as sh (a mutex, a permit, a read or write lease, a
// term) and waits for the grant.
func (c *client) acquire(ctx context.Context, name string, try bool, sh shape, opts []lock.Option) (*lease, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("acquire %q: %w", name, err) // nothing asked of the store (R5)
	}
	for {
		// A call made while the client replaces an expired session waits
		// for the new one instead of failing: no lease was lost by it.
		if err := c.ready.wait(ctx); err != nil {
			return nil, fmt.Errorf("acquire %q: %w", name, c.noSession(err))
		}
		l, err := c.acquireOnce(ctx, name, try, sh, o)
		if errors.Is(err, ErrSessionExpired) && c.isClosed() {
			// The session was lost as the client closed: closed is the news.
			return nil, fmt.Errorf("acquire %q: %w (its session was lost as it closed)", name, lock.ErrClosed)
		}
		if errors.Is(err, ErrSessionExpired) && ctx.Err() == nil {
			continue // its claim is gone with the session; claim again under the new one
		}
		return l, err
	}
}

// noSession is the error of a call whose ctx ended (err) while the client
// waited for a session: the store could not be reached to open one, which
// is lock.ErrNoQuorum, with why the last attempt failed (in the message
// only: a reopen that timed out must not make the caller's cancellation
// look like a deadline).
func (c *client) noSession(err error) error {
	c.mu.Lock()
	last := c.reopenErr
	c.mu.Unlock()
	if last == nil {
		last = errors.New("the new session is not open yet")
	}
	return fmt.Errorf("%w: waiting for a new session: %w (last attempt: %s)", lock.ErrNoQuorum, err, last.Error())
}

// acquireOnce makes one claim under the current session: it registers a
// waiter, proposes the Acquire, and awaits the answer the events bring.
func (c *client) acquireOnce(ctx context.Context, name string, try bool, sh shape, o lock.Options) (*lease, error) {
	req, w, err := c.addWaiter(ctx, name, o.TTL > 0)
	if err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: name, Owner: o.Owner, TtlNs: int64(o.TTL), Try: try,
		Type: sh.typ, Limit: sh.limit, Mode: sh.mode, Value: sh.value,
	}}}
	leader := c.n.leaderChanged.changed() // closed by the next leader change
	res, err := c.n.propose(ctx, cmd)
	if err != nil && res != nil {
		// Committed, with this result, but ctx ended (or the node
		// stopped) before this node applied it.
		return nil, c.abandonCommitted(name, req.Seq, w, res, err)
	}
	if err != nil {
		settled, answered := c.giveUp(req.Seq, w, cmd, errors.Is(err, errAmbiguous))
		return nil, settledErr(ctx, name, err, settled, answered, leader)
	}
	c.endRequest(req.Seq)
	return c.settle(ctx, name, sh, req, w, res)
}

// settledErr is the caller's error of an Acquire whose proposal failed
// with err and whose outcome the clean-up then settled (settled: within
// cleanupTimeout; answered: the store answered its re-proposal). leader
// is the leader-change signal taken before the Acquire was proposed (R5).
func settledErr(ctx context.Context, name string, err error, settled, answered bool, leader <-chan struct{}) error {
	switch {
	case answered && errors.Is(err, errOnlyCutShort) && ctx.Err() != nil && !isClosed(leader):
		// Only a forward cut short by ctx went unanswered, and the same
		// leader (no change since the call began) answered the
		// re-proposal that settled it: reachable (R5). An answer from a
		// new leader proves nothing about the call's time.
		return fmt.Errorf("acquire %q: %w", name, ctx.Err())
	case !settled && !errors.Is(err, lock.ErrNoQuorum):
		// Its outcome could not be settled with the store (R5).
		return fmt.Errorf("%w: %w (settling the acquire did not reach the store within %v; it goes on in the background)",
			lock.ErrNoQuorum, err, cleanupTimeout)
	}
	return err
}

// withdrawnErr is the error of an Acquire whose caller gave up with why
// after its claim reached the store: why, wrapped in lock.ErrNoQuorum if
// withdrawing the claim did not reach the store within cleanupTimeout
// (R5).
func withdrawnErr(name string, why error, withdrawn bool) error {
	if !withdrawn {
		return fmt.Errorf("acquire %q: %w: %w (withdrawing the claim did not reach the store within %v; it goes on in the background)",
			name, lock.ErrNoQuorum, why, cleanupTimeout)
	}
	return fmt.Errorf("acquire %q: %w", name, why)
}

// settle turns the result res of the Acquire request req (waiter w) into
// the caller's answer.
func (c *client) settle(ctx context.Context, name string, sh shape, req *fsmpb.Request, w *waiter, res *fsmpb.Result) (*lease, error) {
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED:
		c.queued(req.Seq, w, res.GetClaim())
		if res.GetCode() == fsmpb.Code_CODE_QUEUED {
			c.n.metrics.Waiting(+1)
			defer c.n.metrics.Waiting(-1)
		}
	case fsmpb.Code_CODE_HELD:
		c.dropWaiter(req.Seq, w)
		return nil, fmt.Errorf("%w: %q", lock.ErrHeld, name)
	case fsmpb.Code_CODE_MISMATCH:
		c.dropWaiter(req.Seq, w)
		return nil, mismatchErr(name, sh, res)
	default:
		c.dropWaiter(req.Seq, w)
		if res.GetCode() == fsmpb.Code_CODE_UNKNOWN_SESSION {
			c.signalLost(req.Session)
		}
		return nil, codeErr(res.GetCode(), name)
	}
	return c.await(ctx, name, req.Seq, res, w)
}

// abandonCommitted ends the Acquire request seq (waiter w) whose entry
// committed with result res while its caller gave up before this node
// applied it (err says why): a claim the result shows, queued or granted,
// is withdrawn before the caller is answered, as await does once the entry
// is applied (I4). A grant applied here meanwhile is on the waiter
// (dropWaiter withdraws it too); the store answers the second Cancel
// NOT_HELD.
func (c *client) abandonCommitted(name string, seq uint64, w *waiter, res *fsmpb.Result, err error) error {
	c.dropWaiter(seq, w)
	c.endRequest(seq)
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED:
	default:
		return err // no claim in the store
	}
	g := gaveUp{name: w.name, claim: res.GetClaim(), session: w.session, ttl: w.ttl}
	return withdrawnErr(name, err, c.cancelClaim(g))
}

// giveUp ends the Acquire request cmd (seq, waiter w) whose proposal
// failed; ambiguous: it may have committed. A grant applied here already
// is on the waiter (dropWaiter withdraws it); one applied later finds no
// waiter (handle withdraws it); resolve withdraws the rest. settled is
// false if resolve did not end within cleanupTimeout; answered says the
// store answered its re-proposal.
func (c *client) giveUp(seq uint64, w *waiter, cmd *fsmpb.Command, ambiguous bool) (settled, answered bool) {
	c.dropWaiter(seq, w)
	if ambiguous {
		return c.resolve(w.gaveUp(), cmd) // ends the request
	}
	c.endRequest(seq)
	return true, false
}

// addWaiter allocates the request of an Acquire of name and registers its
// waiter under the request's seq.
func (c *client) addWaiter(ctx context.Context, name string, ttl bool) (*fsmpb.Request, *waiter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	req, err := c.nextRequest(ctx)
	if err != nil {
		return nil, nil, err
	}
	w := &waiter{
		name: name, session: req.Session, ttl: ttl, sent: time.Now(),
		ch: make(chan *lease, 1), errc: make(chan error, 1),
	}
	c.waiters[req.Seq] = w
	return req, w, nil
}

// queued records the claim of a granted or queued Acquire on its waiter
// and checks the state for a grant or withdrawal that a snapshot covered
// (no event will announce it): a snapshot installed here between the
// Acquire's commit and this point holds a grant that no Granted event
// brought.
func (c *client) queued(seq uint64, w *waiter, claim uint64) {
	c.n.bridge.read(func(st *fsm.State) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.claim = claim
		c.reconcileWaiter(st, seq, w)
	})
}

// await is the one way an Acquire's outcome reaches its caller: through
// waiter w (registered under seq), which the events answer with the lease
// or why there is none. The result res of the Acquire entry says which to
// expect. GRANTED: the answer is already there, since propose returns once
// this node has applied the entry. QUEUED: it waits for the grant, the
// withdrawal, or ctx's end. An answer already on the waiter wins over a
// ctx that has ended meanwhile: the caller gets the lease it was granted
// (and owns its release) rather than a cancel racing the grant it
// already has. A claim the caller does not get is cancelled
// (released if the grant won the race): one ctx gave up on, one whose
// session was lost, one granted to a session the client declared lost.
func (c *client) await(ctx context.Context, name string, seq uint64, res *fsmpb.Result, w *waiter) (*lease, error) {
	var l *lease
	var err error
	select {
	case l = <-w.ch:
	case err = <-w.errc:
	default:
		if res.GetCode() == fsmpb.Code_CODE_GRANTED { // queued checked the state: unreachable
			c.dropWaiter(seq, w)
			c.grantNotSeen(name, seq, w, res)
			c.cancelClaim(w.gaveUp())
			return nil, fmt.Errorf("node: grant of %q at %d without its event", name, res.GetToken())
		}
		select {
		case l = <-w.ch:
		case err = <-w.errc:
		case <-ctx.Done():
			c.dropWaiter(seq, w)
			// Queued while the store was reachable; if it is not now, the
			// withdrawal cannot reach it (R5).
			return nil, withdrawnErr(name, ctx.Err(), c.cancelClaim(w.gaveUp()))
		}
	}
	if err != nil {
		c.dropWaiter(seq, w)
		if !errors.Is(err, lock.ErrClosed) {
			// Session lost: the claim may still be queued or granted
			// under it (the store has not expired it yet); take it out.
			c.cancelClaim(w.gaveUp())
		}
		return nil, err
	}
	c.dropWaiter(seq, w)
	if err := l.Err(); errors.Is(err, ErrSessionExpired) { // granted to a session declared lost
		c.cancelClaim(w.gaveUp())
		return nil, err
	}
	// A TTL lease whose local deadline passed before its caller got it
	// (a short TTL on a slow commit) is the caller's all the same: its
	// Done is closed, and the store expires it on its own timer.
	return l, nil
}

// grantNotSeen logs, at Warn, an Acquire the store answered GRANTED whose
// grant this node applied without an event or a state that shows it: this
// replica's state disagrees with the leader's answer, or the event did
// not reach the client. It should never happen; the record says what the
// local state shows, so that the cause can be found.
func (c *client) grantNotSeen(name string, seq uint64, w *waiter, res *fsmpb.Result) {
	var li fsm.LockInfo
	var queued bool
	var applied uint64
	c.n.bridge.readApplied(func(index uint64, st *fsm.State) {
		li, queued, applied = st.Lock(name), st.Queued(name, res.GetClaim()), index
	})
	c.n.mu.RLock()
	routed := c.n.clients[w.session] == c
	c.n.mu.RUnlock()
	c.n.log.Warn("acquire granted by the store without a grant here (a bug: please report it)",
		"name", name, "token", res.GetToken(), "claim", res.GetClaim(), "seq", seq,
		"session", holderID(w.session), "routed", routed, "applied", applied,
		"here_held", li.Held, "here_token", li.Token, "here_claim", li.Claim,
		"here_session", holderID(li.Session), "here_waiters", li.Waiters, "here_queued", queued)
}

// dropWaiter forgets waiter w of seq: its Acquire has its answer, or has
// given up. A grant left on it, which its caller will never take, is ended
// and withdrawn in the background. (A waiter failed by a lost session or a
// Close is out of the registry already, maybe with a grant on it.)
func (c *client) dropWaiter(seq uint64, w *waiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiters[seq] == w {
		delete(c.waiters, seq)
	}
	select {
	case l := <-w.ch:
		l.end(lock.ErrReleased)
		g := w.gaveUp()
		c.backgroundLocked(func() { c.withdraw(g) })
	default:
	}
}

// codeErr is the error of a result code that is neither a grant nor a
// queue position (nor, for Release and Refresh, OK).
func codeErr(code fsmpb.Code, name string) error {
	switch code {
	case fsmpb.Code_CODE_UNKNOWN_SESSION:
		return errSessionLost
	case fsmpb.Code_CODE_NOT_HELD:
		return fmt.Errorf("%w: %q", lock.ErrNotHeld, name)
	case fsmpb.Code_CODE_INVALID:
		return fmt.Errorf("%w: rejected by the state machine", lock.ErrInvalidOption)
	case fsmpb.Code_CODE_UNSUPPORTED:
		// Admitted while every voter spoke the call's protocol, applied
		// before the cluster committed that level (as opErr for Revoke).
		return fmt.Errorf("%w: %q: the cluster has not committed the protocol level this call needs yet (a voter of an older build, or an upgrade not yet complete; see Stats().Protocol)",
			lock.ErrUnsupported, name)
	default:
		return fmt.Errorf("node: unexpected result %s for %q", code, name)
	}
}
