package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// httpLocker is a lock.Locker over one lockd process's HTTP API, so that
// the history recorder can record HTTP clients. Its leases know only what
// the API told them: Err is set once a Release succeeded or a Refresh or
// Release answered not_held; Done closes then.
type httpLocker struct {
	base   string
	client *http.Client
}

var _ lock.Locker = (*httpLocker)(nil)

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

func (h *httpLocker) call(ctx context.Context, method, path string) (int, reply, error) {
	return api{base: h.base, client: h.client}.call(ctx, method, path)
}

func (h *httpLocker) Acquire(ctx context.Context, name string, _ ...lock.Option) (lock.Lease, error) {
	wait := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl)-500*time.Millisecond, 10*time.Millisecond)
	}
	return h.acquire(ctx, name, "?wait="+wait.String())
}

func (h *httpLocker) TryAcquire(ctx context.Context, name string, _ ...lock.Option) (lock.Lease, error) {
	return h.acquire(ctx, name, "")
}

func (h *httpLocker) acquire(ctx context.Context, name, query string) (lock.Lease, error) {
	code, r, err := h.call(ctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name)+query)
	if err != nil || code != http.StatusOK {
		return nil, apiError(code, r, err)
	}
	l := &httpLease{h: h}
	l.Core, l.ender = leasecore.New(name, r.Token)
	return l, nil
}

func (h *httpLocker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	code, r, err := h.call(ctx, http.MethodGet, "/v1/locks/"+url.PathEscape(name))
	if err != nil || code != http.StatusOK {
		return lock.Info{}, apiError(code, r, err)
	}
	return lock.Info{Name: name, Held: r.Held, Token: r.Token, Owner: r.Owner, Waiters: r.Waiters}, nil
}

func (h *httpLocker) Close() error { return nil }

// httpLease is a lease granted through the API. The lease core holds its
// name, token and ended-once context; Refresh and Release end it as the
// API's answers say.
type httpLease struct {
	leasecore.Core
	ender leasecore.Ender
	h     *httpLocker
}

func (l *httpLease) path(suffix string) string {
	return "/v1/locks/" + url.PathEscape(l.Name()) + suffix + "?token=" + strconv.FormatUint(l.Token(), 10)
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

// send makes a refresh or release call for this lease; a not_held answer
// ends the lease with ErrLost.
func (l *httpLease) send(ctx context.Context, method, suffix string) error {
	code, r, err := l.h.call(ctx, method, l.path(suffix))
	if err != nil || code != http.StatusOK {
		err = apiError(code, r, err)
		if errors.Is(err, lock.ErrNotHeld) {
			l.ender.End(lock.ErrLost)
		}
		return err
	}
	return nil
}
