package lockhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

type grantBody struct {
	Name    string `json:"name"`
	Token   uint64 `json:"token"`
	Lease   string `json:"lease"`             // the lease key
	TTLMS   int64  `json:"ttl_ms"`            // 0: a session lease
	Session string `json:"session,omitempty"` // the owning client session's public ID
}

type refreshBody struct {
	Name  string `json:"name"`
	Token uint64 `json:"token"`
	TTLMS int64  `json:"ttl_ms"`
}

type releaseBody struct {
	Name  string `json:"name"`
	Token uint64 `json:"token"`
}

// acquireParams are the parameters of POST /v1/locks/{name}.
type acquireParams struct {
	name    string
	session *node.ClientSession
	wait    time.Duration // 0: one try
	ttl     time.Duration // 0: a session lease
	owner   string
}

func (p acquireParams) options() []lock.Option {
	opts := []lock.Option{lock.WithOwner(p.owner)}
	if p.ttl > 0 {
		opts = append(opts, lock.WithTTL(p.ttl))
	}
	return opts
}

// parseAcquire parses POST /v1/locks/{name}?session=S&ttl=DUR&wait=DUR&owner=STR.
func (h *Handler) parseAcquire(r *http.Request) (acquireParams, error) {
	q, err := query(r, "session", "ttl", "wait", "owner")
	if err != nil {
		return acquireParams{}, err
	}
	p := acquireParams{name: r.PathValue("name"), owner: q.Get("owner")}
	if p.wait, _, err = duration(q, "wait"); err != nil {
		return acquireParams{}, err
	}
	p.wait = min(p.wait, h.cfg.MaxWait)
	ttl, hasTTL, err := duration(q, "ttl")
	if err != nil {
		return acquireParams{}, err
	}
	opts := []lock.Option{lock.WithOwner(p.owner)}
	if hasTTL {
		p.ttl = ttl
		opts = append(opts, lock.WithTTL(ttl)) // ttl=0 is out of range, not a session lease
	}
	if _, err := lock.ValidateRequest(p.name, opts...); err != nil {
		return acquireParams{}, err
	}
	if q.Has("session") {
		s, err := node.ParseClientSession(q.Get("session"))
		if err != nil {
			return acquireParams{}, err
		}
		p.session = &s
	} else if !hasTTL {
		return acquireParams{}, fmt.Errorf("%w: name a session (a lease that ends when the client stops renewing it) or a ttl: a lease of neither would outlive its client", errBadParam)
	}
	return p, nil
}

// acquire: POST /v1/locks/{name}.
func (h *Handler) acquire(w http.ResponseWriter, r *http.Request) {
	p, err := h.parseAcquire(r)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	ctx, cancel := h.opCtx(r)
	if p.wait > 0 {
		ctx, cancel = context.WithTimeout(r.Context(), p.wait)
	}
	defer cancel()
	var body grantBody
	if h.sessions != nil {
		body, err = h.acquireShared(ctx, r, p)
	} else {
		body, err = h.acquireLocal(ctx, r, p)
	}
	if err != nil {
		h.fail(w, r, err, p.wait > 0)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// acquireShared acquires in cluster mode: a lease of the client session,
// or a keyed TTL lease. A lease whose client left before the answer is
// released.
func (h *Handler) acquireShared(ctx context.Context, r *http.Request, p acquireParams) (grantBody, error) {
	var g node.Grant
	var err error
	switch {
	case p.session != nil && p.wait > 0:
		g, err = h.sessions.AcquireFor(ctx, *p.session, p.name, p.options()...)
	case p.session != nil:
		g, err = h.sessions.TryAcquireFor(ctx, *p.session, p.name, p.options()...)
	case p.wait > 0:
		g, err = h.sessions.AcquireKeyed(ctx, p.name, p.options()...)
	default:
		g, err = h.sessions.TryAcquireKeyed(ctx, p.name, p.options()...)
	}
	if err != nil {
		return grantBody{}, err
	}
	if err := r.Context().Err(); err != nil {
		// The client left (or the server is shutting down) and may never
		// learn the key: give the lock back.
		rctx, cancel := h.cleanupCtx()
		defer cancel()
		if _, rerr := h.sessions.ReleaseKey(rctx, g.Name, g.Key); rerr != nil && !errors.Is(rerr, lock.ErrNotHeld) {
			h.log.Warn("releasing a lease whose client went away", "name", g.Name, "token", g.Token, "error", rerr)
		}
		return grantBody{}, err
	}
	body := grantBody{Name: g.Name, Token: g.Token, Lease: g.Key.String(), TTLMS: ms(g.TTL)}
	if g.Session != 0 {
		body.Session = publicIDOf(g.Session)
	}
	return body, nil
}

// acquireLocal acquires in local mode: a TTL lease this handler holds.
func (h *Handler) acquireLocal(ctx context.Context, r *http.Request, p acquireParams) (grantBody, error) {
	if p.session != nil {
		return grantBody{}, errNoSessions
	}
	var l lock.Lease
	var err error
	if p.wait > 0 {
		l, err = h.cfg.Locker.Acquire(ctx, p.name, p.options()...)
	} else {
		l, err = h.cfg.Locker.TryAcquire(ctx, p.name, p.options()...)
	}
	if err != nil {
		return grantBody{}, err
	}
	if err := r.Context().Err(); err != nil {
		h.local.release(l)
		return grantBody{}, err
	}
	key, err := h.local.track(l, p.ttl)
	if err != nil {
		return grantBody{}, err
	}
	return grantBody{Name: l.Name(), Token: l.Token(), Lease: key.String(), TTLMS: ms(p.ttl)}, nil
}

// leaseParams parses the lease a refresh or release names:
// /v1/locks/{name}?lease=KEY. A token instead of a key is refused by name.
func leaseParams(r *http.Request) (string, node.LeaseKey, error) {
	name, q, err := lockQuery(r, "lease", "token")
	if err != nil {
		return "", node.LeaseKey{}, err
	}
	if q.Has("token") || !q.Has("lease") {
		return "", node.LeaseKey{}, fmt.Errorf("%w: name the lease by its key (lease=KEY, from the acquire's answer); a token names no lease", errBadParam)
	}
	key, err := node.ParseLeaseKey(q.Get("lease"))
	return name, key, err
}

// refresh: POST /v1/locks/{name}/refresh?lease=KEY.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) {
	name, key, err := leaseParams(r)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	var body refreshBody
	if h.sessions != nil {
		var g node.Grant
		g, err = h.sessions.RefreshKey(ctx, name, key)
		body = refreshBody{Name: name, Token: g.Token, TTLMS: ms(g.TTL)}
	} else {
		body, err = h.refreshLocal(ctx, name, key)
	}
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *Handler) refreshLocal(ctx context.Context, name string, key node.LeaseKey) (refreshBody, error) {
	l, ok := h.local.get(name, key)
	if !ok {
		return refreshBody{}, fmt.Errorf("%w: %q: no lease of this handler has that key", lock.ErrNotHeld, name)
	}
	if err := l.lease.Refresh(ctx); err != nil {
		return refreshBody{}, err
	}
	return refreshBody{Name: name, Token: l.lease.Token(), TTLMS: ms(l.ttl)}, nil
}

// release: DELETE /v1/locks/{name}?lease=KEY.
func (h *Handler) release(w http.ResponseWriter, r *http.Request) {
	name, key, err := leaseParams(r)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	var token uint64
	if h.sessions != nil {
		token, err = h.sessions.ReleaseKey(ctx, name, key)
	} else {
		token, err = h.releaseLocal(ctx, name, key)
	}
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, releaseBody{Name: name, Token: token})
}

func (h *Handler) releaseLocal(ctx context.Context, name string, key node.LeaseKey) (uint64, error) {
	l, ok := h.local.get(name, key)
	if !ok {
		return 0, fmt.Errorf("%w: %q: no lease of this handler has that key", lock.ErrNotHeld, name)
	}
	if err := l.lease.Release(ctx); err != nil {
		return 0, err
	}
	return l.lease.Token(), nil
}

// revoke: POST /v1/locks/{name}/revoke?token=N (admin). 200 once the
// lease has ended; 202 if it is still ending when OpTimeout runs out
// (the revoke stays in effect: the holder's grace is its session's TTL).
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	name, q, err := lockQuery(r, "token")
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	token, ok, err := positive(q, "token")
	if err == nil && !ok {
		err = fmt.Errorf("%w: token: the fencing token of the lease to revoke", errBadParam)
	}
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	rv, isRevoker := h.cfg.Locker.(lock.Revoker)
	if !isRevoker {
		h.fail(w, r, errNoOperator, false)
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	err = rv.Revoke(ctx, name, token)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, releaseBody{Name: name, Token: token})
	case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, lock.ErrNoQuorum) && r.Context().Err() == nil:
		writeJSON(w, http.StatusAccepted, releaseBody{Name: name, Token: token})
	default:
		h.fail(w, r, err, false)
	}
}

// cleanupCtx bounds the clean-up of a request whose client left.
func (h *Handler) cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.cfg.OpTimeout)
}
