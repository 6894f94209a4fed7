package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// waiter is a blocked Acquire. It is registered under the seq of its
// request before the request is proposed, so the event that grants the
// claim finds it, whichever entry that is.
type waiter struct {
	name  string
	claim uint64 // set once the Acquire is queued
	sent  time.Time
	ch    chan *lease // buffered 1: the grant
	errc  chan error  // buffered 1: withdrawn or closed
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
			return nil, c.noSession(name, err)
		}
		l, err := c.acquireOnce(ctx, name, try, o)
		if errors.Is(err, ErrSessionExpired) && ctx.Err() == nil && !c.isClosed() {
			continue // its claim is gone with the session; claim again under the new one
		}
		return l, err
	}
}

// noSession is the error of a call whose ctx ended (err) while the client
// waited for a session: the store could not be reached to open one, which
// is lock.ErrNoQuorum, with why the last attempt failed.
func (c *client) noSession(name string, err error) error {
	c.mu.Lock()
	last := c.reopenErr
	c.mu.Unlock()
	if last == nil {
		last = errors.New("the new session is not open yet")
	}
	return fmt.Errorf("acquire %q: %w: waiting for a new session: %w (last attempt: %w)", name, lock.ErrNoQuorum, err, last)
}

// acquireOnce makes one claim under the current session: it registers a
// waiter, proposes the Acquire, and awaits the answer the events bring.
func (c *client) acquireOnce(ctx context.Context, name string, try bool, o lock.Options) (lock.Lease, error) {
	req, w, err := c.addWaiter()
	if err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: req, Name: name, Owner: o.Owner, TtlNs: int64(o.TTL), Try: try,
	}}}
	res, err := c.n.propose(ctx, cmd)
	if err != nil {
		if errors.Is(err, errAmbiguous) {
			c.resolve(ctx, name, cmd)
		}
		c.endRequest(req.Seq)
		c.dropWaiter(req.Seq)
		return nil, err
	}
	c.endRequest(req.Seq)
	switch res.GetCode() {
	case fsmpb.Code_CODE_GRANTED:
	case fsmpb.Code_CODE_QUEUED:
		c.queued(req.Seq, w, name, res.GetClaim())
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
	return c.await(ctx, name, req.Seq, res, w)
}

// addWaiter allocates the request of an Acquire and registers its waiter
// under the request's seq.
func (c *client) addWaiter() (*fsmpb.Request, *waiter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, lock.ErrClosed
	}
	req := c.nextRequest()
	w := &waiter{sent: time.Now(), ch: make(chan *lease, 1), errc: make(chan error, 1)}
	c.waiters[req.Seq] = w
	return req, w, nil
}

// queued records the claim of a queued Acquire on its waiter and checks the
// state for a grant or withdrawal that a snapshot covered (no event will
// announce it).
func (c *client) queued(seq uint64, w *waiter, name string, claim uint64) {
	c.n.bridge.read(func(st *fsm.State) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.name, w.claim = name, claim
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
func (c *client) await(ctx context.Context, name string, seq uint64, res *fsmpb.Result, w *waiter) (lock.Lease, error) {
	claim := res.GetClaim()
	var l *lease
	var err error
	select {
	case l = <-w.ch:
	case err = <-w.errc:
	default:
		if res.GetCode() == fsmpb.Code_CODE_GRANTED {
			c.dropWaiter(seq)
			return nil, fmt.Errorf("node: grant of %q at %d without its event", name, res.GetToken())
		}
		select {
		case l = <-w.ch:
		case err = <-w.errc:
		case <-ctx.Done():
			c.cancelClaim(ctx, name, claim)
			c.dropWaiter(seq)
			return nil, fmt.Errorf("acquire %q: %w", name, ctx.Err())
		}
	}
	if err != nil {
		if !errors.Is(err, lock.ErrClosed) {
			// Session lost: the claim may still be queued or granted
			// under it (the store has not expired it yet); take it out.
			c.cancelClaim(ctx, name, claim)
		}
		return nil, err
	}
	c.dropWaiter(seq)
	if err := l.Err(); err != nil { // granted to a session declared lost
		c.cancelClaim(ctx, name, claim)
		return nil, err
	}
	return l, nil
}

// cancelClaim proposes Cancel{claim}: withdrawn if queued, released if
// granted. It runs after the caller gave up, bounded by cleanupTimeout; if
// it fails, the claim goes with the session (Close or expiry).
func (c *client) cancelClaim(ctx context.Context, name string, claim uint64) {
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
// second effect, and cancels the claim if there was one.
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
		c.cancelClaim(ctx, name, res.GetClaim())
	}
}

// dropWaiter forgets the waiter of seq: its Acquire has its answer.
func (c *client) dropWaiter(seq uint64) {
	c.mu.Lock()
	delete(c.waiters, seq)
	c.mu.Unlock()
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
	default:
		return fmt.Errorf("node: unexpected result %s for %q", code, name)
	}
}
