package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// lease is a granted claim held by a client. Its core's context is
// cancelled, with the reason as cause, when the lease ends; that is its only
// state change.
//
// A TTL lease's local deadline is a plain timer rather than a
// leasecore.Deadline: a successful Refresh resets it to the Refresh's send
// time + TTL − margin; Deadline refuses once passed, and so does Refresh
// here, but the timer may have to move earlier than a late-firing stale
// callback (expireLocally checks deadline, not the timer).
type lease struct {
	leasecore.Core
	ender leasecore.Ender
	c     *client
	ttl   time.Duration // 0: session lease
	// session is the session that holds the lease in the store: the one it
	// was granted to or adopted by.
	session uint64
	// slot is a permit's slot (a semaphore's lease), else 0.
	slot int
	// TTL leases: the holder's local deadline and its timer; c.mu.
	deadline time.Time
	timer    *time.Timer
	// cleaning is set once the store side of an ended lease has been seen
	// to or handed to releaseInStore: one clean-up per lease.
	cleaning atomic.Bool
	// letGo closes once a Release of l was answered by the store with OK
	// or NOT_HELD: the store holds l's token no more (do).
	letGo     chan struct{}
	letGoOnce sync.Once
}

var _ lock.Lease = (*lease)(nil)

// newLease registers a lease of session granted at base (the send time of
// the request that got it, or the local apply time of a hand-off); c.mu
// held.
func (c *client) newLease(name string, token, session uint64, ttl time.Duration, base time.Time) *lease {
	l := &lease{c: c, ttl: ttl, session: session, letGo: make(chan struct{})}
	l.Core, l.ender = leasecore.NewMeasured(name, token, kindOf(ttl), c.n.metrics)
	if ttl > 0 {
		l.deadline = base.Add(ttl - driftMargin(ttl))
		l.timer = time.AfterFunc(time.Until(l.deadline), l.expireLocally)
	}
	c.leases[leaseKey{name, token}] = l
	return l
}

// expireLocally ends a TTL lease whose local deadline has passed. A stale
// run (the timer fired while a Refresh moved the deadline) does nothing.
func (l *lease) expireLocally() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if time.Now().Before(l.deadline) {
		return
	}
	l.end(lock.ErrExpired)
}

// end ends the lease once; c.mu held.
func (l *lease) end(why error) {
	if !l.ender.End(why) {
		return
	}
	switch {
	case errors.Is(why, lock.ErrRevoked): // logged where the revoke is heard (events.go)
	case errors.Is(why, lock.ErrLost):
		l.c.n.log.Warn("lease lost", "name", l.Name(), "token", l.Token(), "holder", holderID(l.session), "reason", why.Error())
	case errors.Is(why, lock.ErrExpired):
		l.c.n.log.Info("lease expired", "name", l.Name(), "token", l.Token(), "holder", holderID(l.session))
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(l.c.leases, leaseKey{l.Name(), l.Token()})
}

// Release implements lock.Lease. It returns once the store answered, ctx
// ended, or the lease ended (whatever ctx). A lease that ended other than
// by a release answers ErrNotHeld wrapping why it ended, and is released
// in the store by token in the background (releaseInStore).
func (l *lease) Release(ctx context.Context) error {
	if l.Ended() {
		return l.endedErr()
	}
	res, err := l.do(ctx, l.releaseCmd, true)
	if err == nil && res.GetCode() == fsmpb.Code_CODE_OK {
		l.cleaning.Store(true) // the store let it go: nothing to clean up
		if l.Ended() && !errors.Is(l.Err(), lock.ErrReleased) {
			return l.NotHeld("") // it had ended here before the Release landed
		}
		l.c.mu.Lock()
		l.end(lock.ErrReleased) // normally done already by the Ended event
		l.c.mu.Unlock()
		return nil
	}
	return l.finish(res, err)
}

// Refresh implements lock.Lease: a TTL lease's local deadline moves to the
// send time of this Refresh plus the TTL, if the store acknowledged it
// before the current deadline passed. Acknowledged later, the lease is over
// for the holder: it ends (ErrExpired), Refresh answers ErrNotHeld, and the
// store-side lease the Refresh renewed is released in the background. Like
// Release, Refresh returns once the lease ends, whatever ctx.
func (l *lease) Refresh(ctx context.Context) error {
	if l.Ended() {
		return l.endedErr()
	}
	sent := time.Now()
	res, err := l.do(ctx, l.refreshCmd, false)
	if err == nil && res.GetCode() == fsmpb.Code_CODE_OK && l.ttl > 0 {
		l.c.mu.Lock()
		if time.Now().Before(l.deadline) {
			l.deadline = sent.Add(l.ttl - driftMargin(l.ttl))
			l.timer.Reset(time.Until(l.deadline))
		} else {
			l.end(fmt.Errorf("%w: the Refresh was acknowledged after the local deadline", lock.ErrExpired))
		}
		l.c.mu.Unlock()
	}
	return l.finish(res, err)
}

func (l *lease) releaseCmd(req *fsmpb.Request) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: req, Name: l.Name(), Token: l.Token()}}}
}

func (l *lease) refreshCmd(req *fsmpb.Request) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: req, Name: l.Name(), Token: l.Token()}}}
}

// errEnded stands for "the lease ended while the request was in flight";
// it never reaches a caller (finish turns it into endedErr).
var errEnded = errors.New("node: lease ended")

// do runs one Release (release) or Refresh request of l on the caller's
// behalf and returns its answer, or errEnded as soon as the lease ends,
// whatever ctx (R4): the request runs on a goroutine of the client (Close
// waits for it), stopped by the end of ctx, of the client, or of the lease,
// and by do's return.
//
// One case waits on: a Release that sees the lease end by a release, whose
// own entry may be the one that released it (the Ended event fires before
// the request returns). It returns with its own answer, or errEnded once
// some other Release of l was answered (letGo): that one's entry, or an
// earlier one, let the token go. A Release that is the only one in flight
// is answered by its own entry then, unless that entry's reply is lost,
// which the per-attempt bound of a forward ends.
func (l *lease) do(ctx context.Context, build func(*fsmpb.Request) *fsmpb.Command, release bool) (*fsmpb.Result, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(l.Context(), func() {
		// Not when released: that may be this very request's entry,
		// applied here before its answer comes back (a forward's reply).
		if !errors.Is(l.Err(), lock.ErrReleased) {
			cancel(errEnded)
		}
	})()
	defer context.AfterFunc(l.c.ctx, func() { cancel(lock.ErrClosed) })()
	ch := make(chan answer, 1)
	if !l.c.background(func() {
		res, err := l.c.request(rctx, build)
		ch <- answer{res, err} // before letGo: a Release prefers its own answer
		if release && err == nil && (res.GetCode() == fsmpb.Code_CODE_OK || res.GetCode() == fsmpb.Code_CODE_NOT_HELD) {
			l.letGoOnce.Do(func() { close(l.letGo) })
		}
	}) {
		return nil, lock.ErrClosed
	}
	select {
	case a := <-ch:
		return l.answered(a)
	case <-l.Done():
	}
	if a, ok := tryAnswer(ch); ok {
		return l.answered(a)
	}
	if !release || !errors.Is(l.Err(), lock.ErrReleased) {
		return nil, errEnded
	}
	select {
	case a := <-ch:
		return l.answered(a)
	case <-l.letGo:
		if a, ok := tryAnswer(ch); ok { // its own answer let it go
			return l.answered(a)
		}
		return nil, errEnded
	}
}

// answer is what a request of do got.
type answer struct {
	res *fsmpb.Result
	err error
}

// tryAnswer takes an answer already on ch.
func tryAnswer(ch <-chan answer) (answer, bool) {
	select {
	case a := <-ch:
		return a, true
	default:
		return answer{}, false
	}
}

// answered maps a request's answer in do.
func (l *lease) answered(a answer) (*fsmpb.Result, error) {
	if a.err != nil && l.c.ctx.Err() != nil {
		return nil, lock.ErrClosed // the Locker closed meanwhile
	}
	return a.res, a.err
}

// finish maps the outcome of a Release or Refresh that did not succeed, or
// a Refresh that did. Once the lease has ended, that is the answer
// (endedErr). NOT_HELD means the store ended the lease; if no event has
// ended it locally yet, it ends now.
func (l *lease) finish(res *fsmpb.Result, err error) error {
	if l.Ended() {
		return l.endedErr()
	}
	if err != nil {
		return err
	}
	switch code := res.GetCode(); code {
	case fsmpb.Code_CODE_OK:
		return nil
	case fsmpb.Code_CODE_NOT_HELD:
		l.cleaning.Store(true)
		l.c.mu.Lock()
		l.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
		l.c.mu.Unlock()
		return l.NotHeld("")
	default:
		// UNKNOWN_SESSION: the request's session expired, but the lease may
		// live on (a TTL lease survives its session): report, don't guess.
		return codeErr(code, l.Name())
	}
}

// endedErr is the answer of a Release or Refresh once the lease has ended:
// ErrNotHeld wrapping why. Unless the holder released it, the store may
// still hold it (its local deadline passed first, a late Refresh renewed
// it, the session was declared lost here): release it there by token.
func (l *lease) endedErr() error {
	if !errors.Is(l.Err(), lock.ErrReleased) {
		l.releaseInStore()
	}
	return l.NotHeld("")
}

// releaseInStore releases the ended lease l in the store by its token, once,
// in the background: a no-op in the store if it no longer holds that
// token. The request needs a live session of the client: it waits for a
// replacement if the current one is lost. It retries, each attempt bounded
// by cleanupTimeout, until the store answers or the client closes: the
// store may come back long after the lease ended and apply a late Refresh
// then (DESIGN.md, "A lease after its end").
func (l *lease) releaseInStore() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.releaseInStoreLocked(nil)
}

// releaseInStoreLocked is releaseInStore with c.mu held; first, if set,
// runs first on its goroutine.
func (l *lease) releaseInStoreLocked(first func()) {
	if !l.cleaning.CompareAndSwap(false, true) {
		return
	}
	c := l.c
	c.bgLocked(func() {
		if first != nil {
			first()
		}
		backoff := leasecore.Backoff{Min: retryMin, Max: retryMax}
		for warned := false; ; warned = true {
			err := l.releaseOnce()
			if err == nil || c.ctx.Err() != nil || errors.Is(err, lock.ErrClosed) || errors.Is(err, errFatal) {
				return
			}
			if !warned {
				c.n.log.Warn("releasing an ended lease in the store failed; retrying until the store answers or the Locker closes",
					"name", l.Name(), "token", l.Token(), "error", err)
			}
			if backoff.Wait(c.ctx) != nil {
				return
			}
		}
	})
}

// releaseOnce is one attempt of releaseInStore, bounded by cleanupTimeout.
func (l *lease) releaseOnce() error {
	c := l.c
	ctx, cancel := context.WithTimeout(c.ctx, cleanupTimeout)
	defer cancel()
	if err := c.ready.wait(ctx); err != nil {
		return err
	}
	res, err := c.request(ctx, l.releaseCmd)
	if err == nil && res.GetCode() == fsmpb.Code_CODE_UNKNOWN_SESSION {
		return errSessionLost // its session is gone: wait for the next one
	}
	if err == nil && res.GetCode() == fsmpb.Code_CODE_NOT_HELD && l.stillOwn() {
		// Refused because the lease's own session still lives in the store
		// and the request came from this client's next one (fsm/DESIGN.md,
		// "Protocol 2": tokens are no capabilities for a live holder). Once
		// that session expires, the release by token goes through.
		return errOldSessionHolds
	}
	return err
}

// errOldSessionHolds: a release by token refused while the lease's own,
// earlier session still holds it in the store.
var errOldSessionHolds = errors.New("node: the lease's earlier session still holds it in the store")

// stillOwn reports whether this node's applied state still has l's grant
// held by l's own session (not adopted away, not ended).
func (l *lease) stillOwn() bool {
	var own bool
	l.c.n.bridge.read(func(st *fsm.State) {
		h, held := st.Lock(l.Name()).Lease(l.Token())
		own = held && h.Session == l.session
	})
	return own
}

// background runs fn on a goroutine of c that c's Close waits for; false
// (fn not run) once c is closed.
func (c *client) background(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bgLocked(fn)
}

// bgLocked is background with c.mu held.
func (c *client) bgLocked(fn func()) bool {
	if c.closed {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		fn()
	}()
	return true
}
