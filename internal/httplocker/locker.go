// Package httplocker is a lock.Locker over lockd's HTTP API
// (lockhttp/DESIGN.md) used the way a client in another language would use
// it: one client session, renewed in the background every TTL/3 at a
// random replica; leases of that session acquired at a random replica and
// refreshed and released by key at a random replica. The lockd tests (the
// nemesis) and lockbench's lockd backend drive lockd processes through it.
//
// It is a test and benchmark client, not a product API: it takes no
// options, and its leases know only what the API told them (no Done
// channel reaches an HTTP client): a lease ends (Done closes) when a
// Release succeeded, a Refresh or Release answered not_held, its session
// was found gone (a renewal or an acquire answered session_expired: ErrLost)
// or given up (Crash: ErrLost), or the Locker closed (ErrReleased); not when
// the store expires it unseen.
//
// Where it falls short of the lock.Locker contract:
//   - A cancelled Acquire abandons its request; the replica withdraws the
//     claim, or releases a grant, when it sees the client leave. A grant
//     the replica answered just before the client left is lost in transit:
//     the session holds that lease until a later acquire of the name by this
//     Locker (acquire is idempotent per session, lockhttp/DESIGN.md) or the
//     session's end. Acquire does not wait for that clean-up.
//   - Errors: 503 answers (no_quorum, closed, upgrading, session_lost) wrap
//     lock.ErrNoQuorum and 429 wraps lock.ErrLimit; a replica that does not
//     answer is a transport error, not ErrNoQuorum.
//
// One session serves all of a Locker's calls, and the API answers a
// session's second acquire of a name with its first claim or lease; so the
// Locker itself lets one call at a time claim a name: a second Acquire of a
// name it claims or holds waits for that claim or lease to end, and a
// TryAcquire answers ErrHeld.
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

// Pauses between attempts to open or renew a session.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

// Locker is a lock.Locker over the HTTP API of a set of replicas.
type Locker struct {
	replicas []Replica
	ttl      time.Duration // the client session's TTL
	closing  context.Context
	close    context.CancelFunc // ends closing: Close was called
	closed   atomic.Bool
	opening  chan struct{} // a token held by the one call opening a session

	mu      sync.Mutex
	session string                   // current session, "" until opened
	stop    chan struct{}            // closed to stop the current session's renewer
	leases  map[*lease]struct{}      // granted, not known to have ended
	names   map[string]chan struct{} // claimed or held here; closed when let go
	wg      sync.WaitGroup
}

var _ lock.Locker = (*Locker)(nil)

// New returns a Locker on replicas whose client sessions have ttl (500ms
// to 1h, as lockhttp accepts). It opens its session on first use.
func New(replicas []Replica, ttl time.Duration) *Locker {
	closing, close := context.WithCancel(context.Background())
	return &Locker{
		replicas: replicas, ttl: ttl, closing: closing, close: close,
		opening: make(chan struct{}, 1),
		leases:  map[*lease]struct{}{}, names: map[string]chan struct{}{},
	}
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
	case code == http.StatusTooManyRequests:
		return fmt.Errorf("%w: HTTP %d %s: %s", lock.ErrLimit, code, r.Error, r.Detail)
	case code == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: HTTP %d %s: %s", lock.ErrNoQuorum, code, r.Error, r.Detail)
	default:
		return fmt.Errorf("HTTP %d %s: %s", code, r.Error, r.Detail)
	}
}

// currentSession returns the session, opening one (at random replicas,
// with a backoff, until ctx ends) if there is none. One call at a time
// opens a session; the others wait for it while their ctx lives.
func (h *Locker) currentSession(ctx context.Context) (string, error) {
	if s := h.CurrentSession(); s != "" {
		return s, nil
	}
	select {
	case h.opening <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("open session: %w", ctx.Err())
	}
	defer func() { <-h.opening }()
	if s := h.CurrentSession(); s != "" { // opened while this call waited
		return s, nil
	}
	b := leasecore.Backoff{Min: retryMin, Max: retryMax}
	for {
		if h.closing.Err() != nil {
			return "", lock.ErrClosed
		}
		cctx, cancel := context.WithTimeout(ctx, h.ttl)
		code, r, err := h.pick().Call(cctx, http.MethodPost, "/v1/sessions?ttl="+h.ttl.String())
		cancel()
		if err == nil && code == http.StatusOK {
			return h.install(r.Session)
		}
		if err := b.Wait(ctx); err != nil {
			return "", fmt.Errorf("open session: %w", err)
		}
	}
}

// install makes session the current one and starts its renewer, unless
// Close began (it may have looked for a session already): then the
// session is ended here.
func (h *Locker) install(session string) (string, error) {
	h.mu.Lock()
	if h.closing.Err() == nil {
		defer h.mu.Unlock()
		h.session, h.stop = session, make(chan struct{})
		stop := h.stop
		h.wg.Go(func() { h.renew(session, stop) })
		return session, nil
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_, _, _ = h.pick().Call(ctx, http.MethodDelete, "/v1/sessions/"+session)
	return "", lock.ErrClosed
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
	b := leasecore.Backoff{Min: retryMin, Max: retryMax}
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

// drop forgets session if it is the current one, stopping its renewer;
// the session's leases end with ErrLost.
func (h *Locker) drop(session string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(session, lock.ErrLost)
}

// dropLocked is drop with h.mu held, ending the leases with why.
func (h *Locker) dropLocked(session string, why error) {
	if h.session != session || session == "" {
		return
	}
	h.session = ""
	close(h.stop)
	for l := range h.leases {
		if l.session == session {
			h.endLocked(l, why)
		}
	}
}

// endLocked ends l with why and lets its name go, with h.mu held.
func (h *Locker) endLocked(l *lease, why error) {
	l.ender.End(why)
	if _, ok := h.leases[l]; ok {
		delete(h.leases, l)
		h.letGoLocked(l.Name(), l.gate)
	}
}

// end is endLocked without h.mu held.
func (h *Locker) end(l *lease, why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.endLocked(l, why)
}

// claim reserves name for one acquire of this Locker, waiting (wait true)
// while another call claims or holds it, or answering ErrHeld (wait
// false). The gate it returns is let go when the acquire fails or its
// lease ends.
func (h *Locker) claim(ctx context.Context, name string, wait bool) (chan struct{}, error) {
	for {
		h.mu.Lock()
		busy, ok := h.names[name]
		if !ok {
			gate := make(chan struct{})
			h.names[name] = gate
			h.mu.Unlock()
			return gate, nil
		}
		h.mu.Unlock()
		if !wait {
			return nil, fmt.Errorf("%w: by this Locker", lock.ErrHeld)
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-h.closing.Done():
			return nil, lock.ErrClosed
		}
	}
}

// letGo ends a claim on name made with gate.
func (h *Locker) letGo(name string, gate chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.letGoLocked(name, gate)
}

func (h *Locker) letGoLocked(name string, gate chan struct{}) {
	if h.names[name] == gate {
		delete(h.names, name)
		close(gate)
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
// before ctx's deadline) runs out, and on a new session when the store
// no longer has this Locker's (its claims ended with it).
func (h *Locker) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return h.take(ctx, name, true, opts)
}

// TryAcquire makes one attempt: ErrHeld if name is held. It too asks again
// on a new session when the store no longer has this Locker's.
func (h *Locker) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return h.take(ctx, name, false, opts)
}

// take claims name here (waiting for this Locker's own claim on it, or
// ErrHeld, as wait says) and makes acquire requests, queueing in the store
// if wait, until one is answered for good: one whose wait ran out is made
// again while ctx lives, one whose session the store no longer has on a
// new session, up to maxSessionRetries such answers.
func (h *Locker) take(ctx context.Context, name string, wait bool, opts []lock.Option) (lock.Lease, error) {
	if len(opts) > 0 {
		return nil, fmt.Errorf("%w: httplocker takes no options", lock.ErrInvalidOption)
	}
	if h.closing.Err() != nil {
		return nil, lock.ErrClosed
	}
	gate, err := h.claim(ctx, name, wait)
	if err != nil {
		return nil, err
	}
	for gone := 0; ; {
		query := ""
		if wait {
			query = "&wait=" + h.wait(ctx).String()
		}
		l, again, err := h.acquire(ctx, name, gate, query)
		if again == sessionGone {
			gone++
		}
		if again == none || gone == maxSessionRetries || ctx.Err() != nil {
			if err != nil {
				h.letGo(name, gate)
				return nil, err
			}
			return l, nil
		}
	}
}

// again says why an acquire request that failed may be made again.
type again int

const (
	none        again = iota
	waitRanOut        // 408: the request's wait ran out, the claim was withdrawn
	sessionGone       // the store no longer has the session: a new one is opened
)

// maxSessionRetries bounds the acquire requests one call makes that the
// store answers session_expired: the first such answer and at most two
// more on new sessions, so the request is made again at most twice.
const maxSessionRetries = 3

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

// acquire makes one acquire request for name, claimed here with gate,
// which the lease it returns lets go when it ends. A failed request says
// whether it may be made again.
func (h *Locker) acquire(ctx context.Context, name string, gate chan struct{}, query string) (lock.Lease, again, error) {
	ctx, cancel := h.bind(ctx)
	defer cancel()
	s, err := h.currentSession(ctx)
	if err != nil {
		return nil, none, h.closedErr(err)
	}
	code, r, err := h.pick().Call(ctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name)+"?session="+s+query)
	if err != nil || code != http.StatusOK {
		why := none
		switch {
		case err != nil:
		case code == http.StatusRequestTimeout:
			why = waitRanOut
		case code == http.StatusNotFound && r.Error == "session_expired":
			h.drop(s)
			why = sessionGone
		}
		if cerr := ctx.Err(); cerr != nil && err == nil {
			err = cerr
		}
		return nil, why, h.closedErr(replyError(code, r, err))
	}
	l := &lease{h: h, key: r.Lease, session: s, gate: gate}
	l.Core, l.ender = leasecore.New(name, r.Token)
	if !h.track(l) {
		return nil, none, lock.ErrClosed // Close ends the session, and so the lease
	}
	return l, none, nil
}

// track records l as held, unless Close began.
func (h *Locker) track(l *lease) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing.Err() != nil {
		return false
	}
	h.leases[l] = struct{}{}
	return true
}

// Inspect asks a random replica for name's holder and queue length.
func (h *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if len(opts) > 0 {
		return lock.Info{}, fmt.Errorf("%w: httplocker takes no options", lock.ErrInvalidOption)
	}
	if h.closing.Err() != nil {
		return lock.Info{}, lock.ErrClosed
	}
	ctx, cancel := h.bind(ctx)
	defer cancel()
	code, r, err := h.pick().Call(ctx, http.MethodGet, "/v1/locks/"+url.PathEscape(name))
	if err != nil || code != http.StatusOK {
		return lock.Info{}, h.closedErr(replyError(code, r, err))
	}
	return lock.Info{Name: name, Held: r.Held, Token: r.Token, Owner: r.Owner, Waiters: r.Waiters}, nil
}

// closeTimeout bounds Close's request that ends the session.
const closeTimeout = 5 * time.Second

// Close ends the session at a replica (which releases its leases and
// withdraws its claims), ends its leases here (ErrReleased), stops
// renewing it and waits for the renewer. If no replica answers, the
// session expires in the store after its TTL. Calls after Close return
// lock.ErrClosed.
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
	}
	h.mu.Lock()
	for l := range h.leases {
		h.endLocked(l, lock.ErrReleased)
	}
	h.dropLocked(h.session, lock.ErrReleased)
	h.mu.Unlock()
	h.wg.Wait()
	return err
}

// lease is a lease granted through the API, held by its key.
type lease struct {
	leasecore.Core
	ender   leasecore.Ender
	h       *Locker
	key     string
	session string        // the session it was granted to
	gate    chan struct{} // its Locker's claim on its name
}

func (l *lease) Refresh(ctx context.Context) error {
	return l.send(ctx, http.MethodPost, "/refresh")
}

func (l *lease) Release(ctx context.Context) error {
	if err := l.send(ctx, http.MethodDelete, ""); err != nil {
		return err
	}
	l.h.end(l, lock.ErrReleased)
	return nil
}

// send makes a refresh or release call for this lease at a random
// replica; a not_held answer ends the lease with ErrLost. Once the lease
// has ended, it answers ErrNotHeld wrapping why, asking no replica.
func (l *lease) send(ctx context.Context, method, suffix string) error {
	if l.Ended() {
		return l.NotHeld("httplocker")
	}
	code, r, err := l.h.pick().Call(ctx, method, "/v1/locks/"+url.PathEscape(l.Name())+suffix+"?lease="+l.key)
	if err != nil || code != http.StatusOK {
		err = replyError(code, r, err)
		if errors.Is(err, lock.ErrNotHeld) {
			l.h.end(l, lock.ErrLost)
		}
		return err
	}
	return nil
}
