package node

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Claims the client gave up: an Acquire whose caller gave up (ctx ended),
// whose session was lost, or whose outcome is unknown, and a grant that
// reaches the client with no waiter for it. Their clean-up never gives up
// while the claim can still be in the store: it retries in the background
// until the store answers, the claim's session is lost (the store withdraws
// or ends its claims when it expires it; a TTL claim outlives its session,
// so its clean-up goes on), or the client closes (its Close ends the
// session and with it every claim). An Acquire waits for its clean-up up
// to cleanupTimeout, so with a leader at hand nothing is left behind when
// it returns.

// Backoff between attempts of a background clean-up.
const (
	cleanupRetryMin = 50 * time.Millisecond
	cleanupRetryMax = time.Second
)

// gaveUp is a claim the client gave up.
type gaveUp struct {
	name    string
	claim   uint64 // 0 while unknown (an ambiguous Acquire)
	session uint64 // the session the claim was made under
	ttl     bool   // a TTL claim, which outlives its session
	// seq is the request's seq: if the session is gone, the state finds
	// the claim by (session, seq) (fsm.State.RoutedClaim).
	seq uint64
}

// backgroundLocked runs fn on a goroutine that Close and abandon wait for, and
// returns a channel closed when fn returns (at once if the client is
// closed); c.mu held.
func (c *client) backgroundLocked(fn func()) <-chan struct{} {
	done := make(chan struct{})
	if c.closed {
		close(done)
		return done
	}
	c.cleanups.Add(1)
	go func() {
		defer c.cleanups.Done()
		defer close(done)
		fn()
	}()
	return done
}

// cancelClaim withdraws claim g (queued) or releases it (granted), in the
// background, and waits for that up to cleanupTimeout; false if the
// clean-up did not end within it (the store could not be reached).
func (c *client) cancelClaim(g gaveUp) bool {
	c.mu.Lock()
	done := c.backgroundLocked(func() { c.withdraw(g) })
	c.mu.Unlock()
	return c.waitCleanup(done, g.name)
}

// waitCleanup waits for a clean-up up to cleanupTimeout; false if it did
// not end within it.
func (c *client) waitCleanup(done <-chan struct{}, name string) bool {
	t := time.NewTimer(cleanupTimeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		c.n.log.Warn("withdrawing an abandoned acquire takes long (no quorum?); it goes on in the background",
			"name", name)
		return false
	}
}

// claimLives reports whether claim g may still be in the store and is
// this client's to clean up.
func (c *client) claimLives(g gaveUp) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && (g.ttl || !c.lostSessions[g.session])
}

// retry runs attempt until it reports done, the claim no longer needs it
// (claimLives) or the client closes, with backoff between attempts. The
// first attempt always runs.
func (c *client) retry(g gaveUp, attempt func(ctx context.Context) (done bool)) {
	wait := cleanupRetryMin
	for first := true; first || c.claimLives(g); first = false {
		if c.ready.wait(c.ctx) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, cleanupTimeout)
		done := attempt(ctx)
		cancel()
		if done || c.ctx.Err() != nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, cleanupRetryMax)
	}
}

// withdraw proposes Cancel{claim} until the store answers it.
func (c *client) withdraw(g gaveUp) {
	c.retry(g, func(ctx context.Context) bool {
		res, err := c.request(ctx, func(req *fsmpb.Request) *fsmpb.Command {
			return &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: req, Name: g.name, Claim: g.claim}}}
		})
		if err != nil {
			c.n.log.Debug("withdrawing an abandoned acquire failed; retrying", "name", g.name, "error", err)
			return errors.Is(err, lock.ErrClosed)
		}
		// OK: withdrawn or released; NOT_HELD: already gone. Only a
		// current session the store no longer knows needs another try.
		return res.GetCode() != fsmpb.Code_CODE_UNKNOWN_SESSION
	})
}

// resolve settles an Acquire whose outcome is unknown (the caller gave up
// while a forward was in flight), in the background: it proposes cmd, a
// command in the Acquire's request (the very same Acquire for a Locker,
// settleByKey's Release for an Acquire by key), until answered — the state
// machine answers it from its de-duplication cache if the Acquire was
// applied — and withdraws the claim if there was one. Its seq stays in the request window meanwhile,
// so the cache keeps its result. It waits for that up to cleanupTimeout:
// settled is false if it did not end within it; answered, that the store
// answered the re-proposal (so it was reachable after the caller gave up).
func (c *client) resolve(g gaveUp, cmd *fsmpb.Command) (settled, answered bool) {
	seq := requestOf(cmd).GetSeq()
	g.seq = seq
	var heard atomic.Bool
	c.mu.Lock()
	closed := c.closed
	done := c.backgroundLocked(func() {
		defer c.endRequest(seq)
		var res *fsmpb.Result
		c.retry(g, func(ctx context.Context) bool {
			var err error
			res, err = c.n.propose(ctx, cmd)
			if res != nil {
				heard.Store(true)
			}
			return err == nil || errors.Is(err, lock.ErrClosed)
		})
		switch res.GetCode() {
		case fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED:
			g.claim = res.GetClaim()
		case fsmpb.Code_CODE_UNKNOWN_SESSION:
			// The session expired meanwhile: its queued claims and
			// session leases went with it, a TTL lease did not, nor
			// a client session's claim made in it.
			g.claim = c.orphanClaim(g)
		}
		if g.claim != 0 {
			c.withdraw(g)
		}
	})
	c.mu.Unlock()
	if closed { // nothing runs: the request is over
		c.endRequest(seq)
		return true, false
	}
	settled = c.waitCleanup(done, g.name)
	return settled, settled && heard.Load()
}

// orphanClaim is the claim the request (g.session, g.seq) made, if the
// store still has it: the session is gone (its queued claims and session
// leases with it), but a TTL lease, and a client session's claim made in
// it, outlive it. Found by the request, not by the session's leases: a
// keyed lease of the same session and name is another caller's.
func (c *client) orphanClaim(g gaveUp) uint64 {
	var claim uint64
	c.n.bridge.read(func(st *fsm.State) { claim = st.RoutedClaim(g.name, g.session, g.seq) })
	return claim
}

// requestOf is the request of cmd (an Acquire, or the Release that
// settles an AcquireFor), nil for others.
func requestOf(cmd *fsmpb.Command) *fsmpb.Request {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_Acquire:
		return op.Acquire.GetReq()
	case *fsmpb.Command_Release:
		return op.Release.GetReq()
	}
	return nil
}
