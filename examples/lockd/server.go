package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// defaultOpTimeout bounds every call that has no wait of its own
// (TryAcquire, Refresh, Release, Inspect): how long a request may wait for
// a leader to be elected before it fails with 503.
const defaultOpTimeout = 5 * time.Second

// server is the HTTP lock API of one replica. Leases it grants belong to
// this process (the locker's session, or TTL leases it created) and are
// refreshed and released by (name, token) through the same process.
type server struct {
	node      *node.Node
	locker    lock.Locker
	log       *slog.Logger
	opTimeout time.Duration

	mu     sync.Mutex
	leases map[leaseKey]lock.Lease // granted here and not yet ended
}

type leaseKey struct {
	name  string
	token uint64
}

func newServer(n *node.Node, locker lock.Locker, log *slog.Logger) *server {
	return &server{node: n, locker: locker, log: log, opTimeout: defaultOpTimeout, leases: map[leaseKey]lock.Lease{}}
}

// handler routes the API. Lock names are one path segment: a name that
// contains '/' must be sent escaped as %2F (curl and every HTTP client
// library keep %2F as is).
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/locks/{name}", s.acquire)
	mux.HandleFunc("POST /v1/locks/{name}/refresh", s.refresh)
	mux.HandleFunc("DELETE /v1/locks/{name}", s.release)
	mux.HandleFunc("GET /v1/locks/{name}", s.inspect)
	mux.HandleFunc("GET /v1/status", s.status)
	// Two or more segments after /v1/locks/ (other than .../refresh): most
	// likely a name with an unescaped '/'. ({rest...} alone would also
	// match "name/" and make the mux redirect "PUT /v1/locks/x" there
	// instead of answering 405.)
	notFound := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Detail: "a lock name is one path segment: escape '/' in names as %2F"})
	}
	mux.HandleFunc("/v1/locks/{name}/{next}", notFound)
	mux.HandleFunc("/v1/locks/{name}/{next}/{rest...}", notFound)
	return s.logRequests(mux)
}

type lockBody struct {
	Name  string `json:"name"`
	Token uint64 `json:"token"`
}

type infoBody struct {
	Name        string `json:"name"`
	Held        bool   `json:"held"`
	Token       uint64 `json:"token"`
	Owner       string `json:"owner"`
	Waiters     int    `json:"waiters"`
	ExpiresInMS int64  `json:"expires_in_ms"`
}

type statusBody struct {
	ID           string       `json:"id"`
	State        string       `json:"state"`
	Leader       string       `json:"leader"`
	Term         uint64       `json:"term"`
	CommitIndex  uint64       `json:"commit_index"`
	AppliedIndex uint64       `json:"applied_index"`
	Members      []memberBody `json:"members"`
}

type memberBody struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

type errorBody struct {
	Error  string `json:"error"`            // a short code: held, not_held, invalid, timeout, no_quorum, ...
	Detail string `json:"detail,omitempty"` // the error message
}

// acquire: POST /v1/locks/{name}?wait=DUR&ttl=DUR&owner=STR.
func (s *server) acquire(w http.ResponseWriter, r *http.Request) {
	p, err := parseAcquire(r)
	if err != nil {
		s.fail(w, r, err, false)
		return
	}
	var l lock.Lease
	if p.wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), p.wait)
		defer cancel()
		l, err = s.locker.Acquire(ctx, p.name, p.options()...)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), s.opTimeout)
		defer cancel()
		l, err = s.locker.TryAcquire(ctx, p.name, p.options()...)
	}
	if err != nil {
		s.fail(w, r, err, p.wait > 0)
		return
	}
	if err := r.Context().Err(); err != nil {
		// The client left (or the server is shutting down) and may never
		// learn the token: give the lock back rather than hold it until
		// this process exits.
		s.releaseAbandoned(l)
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "canceled", Detail: err.Error()})
		return
	}
	s.track(l)
	writeJSON(w, http.StatusOK, lockBody{Name: l.Name(), Token: l.Token()})
}

// refresh: POST /v1/locks/{name}/refresh?token=N.
func (s *server) refresh(w http.ResponseWriter, r *http.Request) {
	l, ok := s.leaseParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opTimeout)
	defer cancel()
	if err := l.Refresh(ctx); err != nil {
		s.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, lockBody{Name: l.Name(), Token: l.Token()})
}

// release: DELETE /v1/locks/{name}?token=N.
func (s *server) release(w http.ResponseWriter, r *http.Request) {
	l, ok := s.leaseParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		s.fail(w, r, err, false)
		return
	}
	s.untrack(l)
	writeJSON(w, http.StatusOK, lockBody{Name: l.Name(), Token: l.Token()})
}

// inspect: GET /v1/locks/{name}. Linearizable: it reflects every request
// answered before it, on any replica.
func (s *server) inspect(w http.ResponseWriter, r *http.Request) {
	name, err := parseName(r)
	if err != nil {
		s.fail(w, r, err, false)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opTimeout)
	defer cancel()
	info, err := s.locker.Inspect(ctx, name)
	if err != nil {
		s.fail(w, r, err, false)
		return
	}
	ms := time.Millisecond
	writeJSON(w, http.StatusOK, infoBody{
		Name: info.Name, Held: info.Held, Token: info.Token, Owner: info.Owner, Waiters: info.Waiters,
		ExpiresInMS: int64((info.ExpiresIn + ms - 1) / ms), // rounded up: 0 only for session leases
	})
}

// status: GET /v1/status, this replica's view of the cluster (not a
// linearizable read).
func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	st := s.node.Stats()
	members, err := s.node.Members()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "unavailable", Detail: err.Error()})
		return
	}
	body := statusBody{
		ID: st.ID, State: st.State, Leader: st.LeaderID, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, Members: []memberBody{},
	}
	for _, m := range members {
		body.Members = append(body.Members, memberBody{ID: m.ID, Addr: m.Addr, Voter: m.Voter})
	}
	writeJSON(w, http.StatusOK, body)
}

// leaseParam finds the lease a refresh or release names. It answers 400
// for a malformed request and 409 when this process holds no such lease
// (never granted here, already ended, or granted before a restart).
func (s *server) leaseParam(w http.ResponseWriter, r *http.Request) (lock.Lease, bool) {
	key, err := parseLease(r)
	if err != nil {
		s.fail(w, r, err, false)
		return nil, false
	}
	s.mu.Lock()
	l := s.leases[key]
	s.mu.Unlock()
	if l == nil {
		writeJSON(w, http.StatusConflict, errorBody{Error: "not_held", Detail: "this replica holds no lease " + strconv.Quote(key.name) + " with token " + strconv.FormatUint(key.token, 10)})
		return nil, false
	}
	return l, true
}

// track remembers l until it ends, whatever ends it (release, expiry, loss
// of the session, shutdown).
func (s *server) track(l lock.Lease) {
	key := leaseKey{l.Name(), l.Token()}
	s.mu.Lock()
	s.leases[key] = l
	s.mu.Unlock()
	context.AfterFunc(l.Context(), func() { s.untrack(l) })
}

func (s *server) untrack(l lock.Lease) {
	key := leaseKey{l.Name(), l.Token()}
	s.mu.Lock()
	if s.leases[key] == l {
		delete(s.leases, key)
	}
	s.mu.Unlock()
}

func (s *server) releaseAbandoned(l lock.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		s.log.Warn("releasing a lease whose client went away", "name", l.Name(), "token", l.Token(), "error", err)
	}
}

// fail answers err. waited says the call had a wait of its own, so that
// running out of it while queued is 408; any other call that runs out of
// time could not reach a quorum, which is 503.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error, waited bool) {
	code, short := statusOf(err, waited)
	if r.Context().Err() != nil {
		short = "canceled" // the client left or the server is shutting down
	}
	if code >= 500 {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", err)
	}
	writeJSON(w, code, errorBody{Error: short, Detail: err.Error()})
}

func statusOf(err error, waited bool) (int, string) {
	switch {
	case errors.Is(err, errBadParam), errors.Is(err, lock.ErrInvalidName), errors.Is(err, lock.ErrInvalidOption):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, lock.ErrHeld):
		return http.StatusConflict, "held"
	case errors.Is(err, lock.ErrNotHeld):
		return http.StatusConflict, "not_held"
	case errors.Is(err, lock.ErrLimit):
		return http.StatusTooManyRequests, "limit"
	case errors.Is(err, lock.ErrNoQuorum):
		return http.StatusServiceUnavailable, "no_quorum"
	case errors.Is(err, lock.ErrClosed):
		return http.StatusServiceUnavailable, "closed"
	case errors.Is(err, lock.ErrLost):
		// This replica's session expired (it was cut off); the node opens a
		// new one, so a retry can succeed.
		return http.StatusServiceUnavailable, "session_lost"
	case waited && errors.Is(err, context.DeadlineExceeded):
		return http.StatusRequestTimeout, "timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "no_quorum"
	default:
		return http.StatusInternalServerError, "internal"
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// logRequests logs every request at debug level.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Debug("http", "method", r.Method, "path", r.URL.EscapedPath(), "query", r.URL.RawQuery,
			"status", rec.code, "duration", time.Since(start))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
