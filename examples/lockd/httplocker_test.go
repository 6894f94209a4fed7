package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// httpLocker is a lock.Locker over lockd's HTTP API as a client in another
// language would use it: one client session, renewed in the background
// every TTL/3 at a random replica, leases of that session acquired at a
// random replica and refreshed and released by key at a random replica.
// Its leases know only what the API told them: Err is set once a Release
// succeeded or a Refresh or Release answered not_held.
type httpLocker struct {
	apis []api
	ttl  time.Duration // the client session's TTL

	mu      sync.Mutex
	session string        // current session, "" until opened
	renewed chan struct{} // closed to stop the current session's renewer
	wg      sync.WaitGroup
}

var _ lock.Locker = (*httpLocker)(nil)

func newHTTPLocker(apis []api, ttl time.Duration) *httpLocker {
	return &httpLocker{apis: apis, ttl: ttl}
}

// pick is a random replica's API.
func (h *httpLocker) pick() api { return h.apis[rand.IntN(len(h.apis))] }

// apiError maps an error reply to the lock package's errors where its
// outcome is certain; everything else is an unknown outcome.
func apiError(code int, r reply, err error) error {
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
// until ctx ends) if there is none.
func (h *httpLocker) currentSession(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.session != "" {
		return h.session, nil
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, h.ttl)
		code, r, err := h.pick().call(cctx, http.MethodPost, "/v1/sessions?ttl="+h.ttl.String())
		cancel()
		if err == nil && code == http.StatusOK {
			h.session = r.Session
			h.renewed = make(chan struct{})
			h.wg.Go(func() { h.renew(r.Session, h.renewed) })
			return h.session, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("open session: %w", ctx.Err())
		}
	}
}

// renew renews session every TTL/3 at random replicas, trying others at
// once when one does not answer, until stop closes or the session is gone.
func (h *httpLocker) renew(session string, stop chan struct{}) {
	tick := time.NewTicker(h.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		deadline := time.Now().Add(h.ttl / 3)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			code, _, err := h.pick().call(ctx, http.MethodPut, "/v1/sessions/"+session)
			cancel()
			if err == nil && code == http.StatusOK {
				break
			}
			if code == http.StatusNotFound { // gone: the next acquire opens another
				h.drop(session)
				return
			}
		}
	}
}

// drop forgets session if it is the current one, stopping its renewer.
func (h *httpLocker) drop(session string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.session == session {
		h.session = ""
		close(h.renewed)
	}
}

// crash is the client dying: its session is never renewed or closed
// again, so its leases pass on when the store expires it.
func (h *httpLocker) crash() {
	h.mu.Lock()
	s := h.session
	h.mu.Unlock()
	if s != "" {
		h.drop(s)
	}
}

func (h *httpLocker) Acquire(ctx context.Context, name string, _ ...lock.Option) (lock.Lease, error) {
	wait := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl)-500*time.Millisecond, 10*time.Millisecond)
	}
	return h.acquire(ctx, name, "&wait="+wait.String())
}

func (h *httpLocker) TryAcquire(ctx context.Context, name string, _ ...lock.Option) (lock.Lease, error) {
	return h.acquire(ctx, name, "")
}

func (h *httpLocker) acquire(ctx context.Context, name, query string) (lock.Lease, error) {
	s, err := h.currentSession(ctx)
	if err != nil {
		return nil, err
	}
	code, r, err := h.pick().call(ctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name)+"?session="+s+query)
	if code == http.StatusNotFound && r.Error == "session_expired" {
		h.drop(s)
	}
	if err != nil || code != http.StatusOK {
		return nil, apiError(code, r, err)
	}
	l := &httpLease{h: h, key: r.Lease}
	l.Core, l.ender = leasecore.New(name, r.Token)
	return l, nil
}

func (h *httpLocker) Inspect(ctx context.Context, name string, _ ...lock.InspectOption) (lock.Info, error) {
	code, r, err := h.pick().call(ctx, http.MethodGet, "/v1/locks/"+url.PathEscape(name))
	if err != nil || code != http.StatusOK {
		return lock.Info{}, apiError(code, r, err)
	}
	return lock.Info{Name: name, Held: r.Held, Token: r.Token, Owner: r.Owner, Waiters: r.Waiters}, nil
}

// Close stops renewing (the session then expires in the store).
func (h *httpLocker) Close() error {
	h.crash()
	h.wg.Wait()
	return nil
}

// httpLease is a lease granted through the API, held by its key.
type httpLease struct {
	leasecore.Core
	ender leasecore.Ender
	h     *httpLocker
	key   string
}

func (l *httpLease) Refresh(ctx context.Context) error {
	return l.send(ctx, http.MethodPost, "/refresh")
}

func (l *httpLease) Release(ctx context.Context) error {
	if err := l.send(ctx, http.MethodDelete, ""); err != nil {
		return err
	}
	l.ender.End(lock.ErrReleased)
	return nil
}

// send makes a refresh or release call for this lease at a random
// replica; a not_held answer ends the lease with ErrLost.
func (l *httpLease) send(ctx context.Context, method, suffix string) error {
	code, r, err := l.h.pick().call(ctx, method, "/v1/locks/"+url.PathEscape(l.Name())+suffix+"?lease="+l.key)
	if err != nil || code != http.StatusOK {
		err = apiError(code, r, err)
		if errors.Is(err, lock.ErrNotHeld) {
			l.ender.End(lock.ErrLost)
		}
		return err
	}
	return nil
}

// currentSessionNow is the current session, "" if none (crashed, gone).
func (h *httpLocker) currentSessionNow() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.session
}
