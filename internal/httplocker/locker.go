// Package httplocker is a lock.Locker over lockd's HTTP API
// (lockhttp/DESIGN.md) used the way a client in another language would use
// it: one client session, renewed in the background every TTL/3 at a
// random replica; leases of that session acquired at a random replica and
// refreshed and released by key at a random replica. The lockd tests (the
// nemesis) and lockbench's lockd backend drive lockd processes through it.
//
// It is a test and benchmark client, not a product API: it takes no
// options, and its leases know only what the API told them (no Done
// channel reaches an HTTP client): a lease ends when a Release succeeded or
// a Refresh or Release answered not_held, not when the store expires it.
package httplocker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// maxWait bounds the wait of one acquire request; Acquire asks again
// while its ctx lives (lockhttp's own bound is 5 min).
const maxWait = 30 * time.Second

// Locker is a lock.Locker over the HTTP API of a set of replicas.
type Locker struct {
	replicas []Replica
	ttl      time.Duration // the client session's TTL
	closing  context.Context
	close    context.CancelFunc // ends closing: Close was called
	closed   atomic.Bool

	mu      sync.Mutex
	session string        // current session, "" until opened
	stop    chan struct{} // closed to stop the current session's renewer
	wg      sync.WaitGroup
}

var _ lock.Locker = (*Locker)(nil)

// New returns a Locker on replicas whose client sessions have ttl (500ms
// to 1h, as lockhttp accepts). It opens its session on first use.
func New(replicas []Replica, ttl time.Duration) *Locker {
	closing, close := context.WithCancel(context.Background())
	return &Locker{replicas: replicas, ttl: ttl, closing: closing, close: close}
}

// bind returns a context that ends with ctx or when the Locker closes.
func (h *Locker) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// closedErr is lock.ErrClosed once Close was called, else err.
func (h *Locker) closedErr(err error) error {
	if h.closing.Err() != nil {
		return lock.ErrClosed
	}
	return err
}

// pick is a random replica.
func (h *Locker) pick() Replica { return h.replicas[rand.IntN(len(h.replicas))] }

// replyError maps an error reply to the lock package's errors where its
// outcome is certain; everything else is an error of unknown outcome.
func replyError(code int, r Reply, err error) error {
	switch {
	case err != nil:
		return err
	case r.Error == "held":
		return lock.ErrHeld
	case r.Error == "not_held":
		return lock.ErrNotHeld
	default:
		return fmt.Errorf("HTTP %d %s: %s", code, r.Error, r.Detail)
	}
}

// currentSession returns the session, opening one (at random replicas,
// with a backoff, until ctx ends) if there is none.
func (h *Locker) currentSession(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing.Err() != nil {
		return "", lock.ErrClosed
	}
	if h.session != "" {
		return h.session, nil
	}
	var b leasecore.Backoff
	for {
		cctx, cancel := context.WithTimeout(ctx, h.ttl)
		code, r, err := h.pick().Call(cctx, http.MethodPost, "/v1/sessions?ttl="+h.ttl.String())
		cancel()
		if err == nil && code == http.StatusOK {
			h.session, h.stop = r.Session, make(chan struct{})
			stop := h.stop
			h.wg.Go(func() { h.renew(r.Session, stop) })
			return h.session, nil
		}
		if err := b.Wait(ctx); err != nil {
			return "", fmt.Errorf("open session: %w", err)
		}
	}
}

// renew renews session every TTL/3 at random replicas, trying others (with
// a backoff) when one does not answer, until stop closes or the session is
// gone.
func (h *Locker) renew(session string, stop chan struct{}) {
	tick := time.NewTicker(h.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.ttl/3)
		h.renewOnce(ctx, session, stop)
		cancel()
	}
}

// renewOnce tries to renew session until it succeeds, ctx ends or stop
// closes; a session the store no longer has is dropped.
func (h *Locker) renewOnce(ctx context.Context, session string, stop chan struct{}) {
	var b leasecore.Backoff
	for {
		code, _, err := h.pick().Call(ctx, http.MethodPut, "/v1/sessions/"+session)
		switch {
		case err == nil && code == http.StatusOK:
			return
		case code == http.StatusNotFound: // gone: the next acquire opens another
			h.drop(session)
			return
		}
		select {
		case <-stop:
			return
		default:
		}
		if b.Wait(ctx) != nil {
			return
		}
	}
}

// drop forgets session if it is the current one, stopping its renewer.
func (h *Locker) drop(session string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.session == session && session != "" {
		h.session = ""
		close(h.stop)
	}
}

// Crash is the client dying: its session is never renewed or closed
// again, so its leases pass on when the store expires it. The next acquire
// opens a new session.
func (h *Locker) Crash() { h.drop(h.CurrentSession()) }

// CurrentSession is the current session, "" if none (not opened yet,
// crashed, gone).
func (h *Locker) CurrentSession() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.session
}

// Acquire queues for name until it is granted or ctx ends, asking again
// each time one request's wait (at most maxWait, and ending half a second
// before ctx's deadline) runs out.
func (h *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%w: httplocker takes no options", lock.ErrInvalidOption)
	}
	for {
		l, code, err := h.acquire(ctx, name, "&wait="+h.wait(ctx).String())
		if code != http.StatusRequestTimeout || ctx.Err() != nil {
			return l, err
		}
	}
}

// wait is the wait of one acquire request: maxWait, but ending a second
// before the HTTP client's timeout and half a second before ctx's deadline.
func (h *Locker) wait(ctx context.Context) time.Duration {
	w := maxWait
	if t := h.replicas[0].Client.Timeout; t > 0 {
		w = min(w, t-time.Second)
	}
	if dl, ok := ctx.Deadline(); ok {
		w = min(w, time.Until(dl)-500*time.Millisecond)
	}
	return max(w, 10*time.Millisecond)
}

// TryAcquire makes one attempt: ErrHeld if name is held.
func (h *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%w: httplocker takes no options", lock.ErrInvalidOption)
	}
	l, _, err := h.acquire(ctx, name, "")
	return l, err
}

func (h *Locker) acquire(ctx context.Context, name, query string) (lock.Lease, int, error) {
	ctx, cancel := h.bind(ctx)
	defer cancel()
	s, err := h.currentSession(ctx)
	if err != nil {
		return nil, 0, h.closedErr(err)
	}
	code, r, err := h.pick().Call(ctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name)+"?session="+s+query)
	if code == http.StatusNotFound && r.Error == "session_expired" {
		h.drop(s)
	}
	if err != nil || code != http.StatusOK {
		if cerr := ctx.Err(); cerr != nil && err == nil {
			err = cerr
		}
		return nil, code, h.closedErr(replyError(code, r, err))
	}
	l := &lease{h: h, key: r.Lease}
	l.Core, l.ender = leasecore.New(name, r.Token)
	return l, code, nil
}

// Inspect asks a random replica for name's holder and queue length.
func (h *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if len(opts) > 0 {
		return lock.Info{}, fmt.Errorf("%w: httplocker takes no options", lock.ErrInvalidOption)
	}
	if h.closing.Err() != nil {
		return lock.Info{}, lock.ErrClosed
	}
	code, r, err := h.pick().Call(ctx, http.MethodGet, "/v1/locks/"+url.PathEscape(name))
	if err != nil || code != http.StatusOK {
		return lock.Info{}, replyError(code, r, err)
	}
	return lock.Info{Name: name, Held: r.Held, Token: r.Token, Owner: r.Owner, Waiters: r.Waiters}, nil
}

// closeTimeout bounds Close's request that ends the session.
const closeTimeout = 5 * time.Second

// Close ends the session at a replica (which releases its leases and
// withdraws its claims), stops renewing it and waits for the renewer. If
// no replica answers, the session expires in the store after its TTL.
// Calls after Close return lock.ErrClosed.
func (h *Locker) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.close() // ends session opens and acquires in flight
	var err error
	if s := h.CurrentSession(); s != "" {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		code, r, cerr := h.pick().Call(ctx, http.MethodDelete, "/v1/sessions/"+s)
		cancel()
		if cerr != nil || (code != http.StatusOK && code != http.StatusNotFound) {
			err = fmt.Errorf("close session: %w", replyError(code, r, cerr))
		}
		h.drop(s)
	}
	h.wg.Wait()
	return err
}

// lease is a lease granted through the API, held by its key.
type lease struct {
	leasecore.Core
	ender leasecore.Ender
	h     *Locker
	key   string
}

func (l *lease) Refresh(ctx context.Context) error {
	return l.send(ctx, http.MethodPost, "/refresh")
}

func (l *lease) Release(ctx context.Context) error {
	if err := l.send(ctx, http.MethodDelete, ""); err != nil {
		return err
	}
	l.ender.End(lock.ErrReleased)
	return nil
}

// send makes a refresh or release call for this lease at a random
// replica; a not_held answer ends the lease with ErrLost.
func (l *lease) send(ctx context.Context, method, suffix string) error {
	if l.h.closing.Err() != nil { // Close ended the session and its leases
		return lock.ErrClosed
	}
	code, r, err := l.h.pick().Call(ctx, method, "/v1/locks/"+url.PathEscape(l.Name())+suffix+"?lease="+l.key)
	if err != nil || code != http.StatusOK {
		err = replyError(code, r, err)
		if errors.Is(err, lock.ErrNotHeld) {
			l.ender.End(lock.ErrLost)
		}
		return err
	}
	return nil
}
