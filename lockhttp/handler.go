package lockhttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// ClientSessions is what a Locker offers for cluster mode (DESIGN.md, "Two
// modes"): client sessions and lease keys that work at every replica.
// *node.Node implements it.
type ClientSessions interface {
	OpenClientSession(ctx context.Context, ttl time.Duration, owner string) (node.ClientSession, error)
	RenewClientSession(ctx context.Context, s node.ClientSession) (time.Duration, error)
	CloseClientSession(ctx context.Context, s node.ClientSession) error
	ClientSessionInfo(ctx context.Context, id uint64) (node.ClientSessionInfo, error)
	ListClientSessions(ctx context.Context) ([]node.ClientSessionInfo, error)
	AcquireFor(ctx context.Context, s node.ClientSession, name string, opts ...lock.Option) (node.Grant, error)
	TryAcquireFor(ctx context.Context, s node.ClientSession, name string, opts ...lock.Option) (node.Grant, error)
	AcquireKeyed(ctx context.Context, name string, opts ...lock.Option) (node.Grant, error)
	TryAcquireKeyed(ctx context.Context, name string, opts ...lock.Option) (node.Grant, error)
	RefreshKey(ctx context.Context, name string, key node.LeaseKey) (node.Grant, error)
	ReleaseKey(ctx context.Context, name string, key node.LeaseKey) (uint64, error)
}

// Operator is what a Locker offers for the operator's endpoints (status,
// leadership transfer, snapshot). *node.Node implements it.
type Operator interface {
	Stats() node.Stats
	Members() ([]node.Member, error)
	TransferLeadership(ctx context.Context) error
	Snapshot(ctx context.Context, w io.Writer) (node.SnapshotInfo, error)
}

// Config configures a Handler.
type Config struct {
	// Locker serves the locks (required). If it implements ClientSessions
	// the handler runs in cluster mode, else in local mode; Operator
	// enables the operator's endpoints.
	Locker lock.Locker
	// Authenticate maps a request to its role, or refuses it (false: 401).
	// nil: every caller is admin.
	Authenticate func(*http.Request) (Role, bool)
	// Ready reports whether the store can serve (GET /readyz); nil: ready.
	Ready func() error
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
	// OpTimeout bounds every call without a wait of its own: how long a
	// request may wait for a leader before it fails with 503. Default 5s.
	OpTimeout time.Duration
	// MaxWait caps an acquire's wait. Default 5 min.
	MaxWait time.Duration
	// DefaultSessionTTL is a client session's TTL when POST /v1/sessions
	// names none. Default 10 s.
	DefaultSessionTTL time.Duration
	// Logger gets failed requests at Warn and every request at Debug.
	// nil: silent.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultOpTimeout  = 5 * time.Second
	DefaultMaxWait    = 5 * time.Minute
	DefaultSessionTTL = 10 * time.Second
)

// Handler is the HTTP lock API. Close it when it stops serving: in local
// mode it releases the leases it holds.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	sessions ClientSessions // nil in local mode
	op       Operator       // nil without operator endpoints
	local    *localLeases   // local mode's leases
	mux      *http.ServeMux
	closing  sync.Once
}

// New returns the handler of cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Locker == nil {
		return nil, errors.New("lockhttp: Config.Locker is nil")
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.DefaultSessionTTL <= 0 {
		cfg.DefaultSessionTTL = DefaultSessionTTL
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.sessions, _ = cfg.Locker.(ClientSessions)
	h.op, _ = cfg.Locker.(Operator)
	if h.sessions == nil {
		h.local = newLocalLeases(cfg.Locker, h.log, cfg.OpTimeout)
	}
	h.routes()
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.serve(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	h.serve(rec, r)
	h.log.Debug("http", "method", r.Method, "path", logPath(r), "status", rec.code, "duration", time.Since(start))
}

// serve routes r. What no route matches, the mux answers itself (404, 405
// with Allow, a redirect): its errors are made JSON like every other.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	hh, pattern := h.mux.Handler(r)
	if pattern == "" {
		hh.ServeHTTP(&jsonErrors{ResponseWriter: w}, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// jsonErrors turns the mux's plain-text error answers into the API's JSON
// errors; other answers (redirects) pass as they are.
type jsonErrors struct {
	http.ResponseWriter
	replaced bool
}

func (j *jsonErrors) WriteHeader(code int) {
	if code < 400 {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.replaced = true
	short, detail := "not_found", "no such endpoint (a lock name is one path segment: escape '/' as %2F)"
	if code == http.StatusMethodNotAllowed {
		short, detail = "method_not_allowed", "this endpoint takes "+j.Header().Get("Allow")
	}
	j.Header().Del("X-Content-Type-Options")
	writeJSON(j.ResponseWriter, code, errorBody{Error: short, Detail: detail})
}

func (j *jsonErrors) Write(p []byte) (int, error) {
	if j.replaced {
		return len(p), nil // the mux's plain text, replaced
	}
	return j.ResponseWriter.Write(p)
}

// Close releases the leases a local-mode handler holds (within
// OpTimeout); a cluster-mode handler holds none.
func (h *Handler) Close() error {
	var err error
	h.closing.Do(func() {
		if h.local != nil {
			err = h.local.close()
		}
	})
	return err
}

// route is one endpoint: what the mux matches, the role it needs
// (RoleNone: anyone), and its handler. openapi.json documents each one
// (TestOpenAPI_MatchesRoutes).
type route struct {
	method, path string
	role         Role
	fn           http.HandlerFunc
}

// table lists every endpoint.
func (h *Handler) table() []route {
	return []route{
		{"POST", "/v1/sessions", RoleClient, h.openSession},
		{"PUT", "/v1/sessions/{session}", RoleClient, h.renewSession},
		{"DELETE", "/v1/sessions/{session}", RoleClient, h.closeSession},
		{"GET", "/v1/sessions/{session}", RoleClient, h.sessionInfo},
		{"GET", "/v1/sessions", RoleAdmin, h.listSessions},
		{"POST", "/v1/locks/{name}", RoleClient, h.acquire},
		{"POST", "/v1/locks/{name}/refresh", RoleClient, h.refresh},
		{"DELETE", "/v1/locks/{name}", RoleClient, h.release},
		{"GET", "/v1/locks/{name}", RoleClient, h.inspect},
		{"GET", "/v1/locks", RoleClient, h.list},
		{"POST", "/v1/locks/{name}/revoke", RoleAdmin, h.revoke},
		{"GET", "/v1/status", RoleClient, h.status},
		{"POST", "/v1/leader/transfer", RoleAdmin, h.transfer},
		{"GET", "/v1/snapshot", RoleAdmin, h.snapshot},
		{"GET", "/healthz", RoleNone, h.healthz},
		{"GET", "/readyz", RoleNone, h.readyz},
		{"GET", "/metrics", RoleNone, h.metrics},
	}
}

// routes registers the table's endpoints.
func (h *Handler) routes() {
	m := http.NewServeMux()
	for _, rt := range h.table() {
		var hh http.Handler = rt.fn
		if rt.role > RoleNone {
			hh = h.need(rt.role, rt.fn)
		}
		m.Handle(rt.method+" "+rt.path, hh)
	}
	// Two or more segments after /v1/locks/ (other than .../refresh and
	// .../revoke): most likely a name with an unescaped '/'. ({rest...}
	// alone would also match "name/" and make the mux redirect "PUT
	// /v1/locks/x" there instead of answering 405.)
	notFound := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Detail: "a lock name is one path segment: escape '/' in names as %2F"})
	}
	m.HandleFunc("/v1/locks/{name}/{next}", notFound)
	m.HandleFunc("/v1/locks/{name}/{next}/{rest...}", notFound)
	h.mux = m
}

// need wraps fn with the check that the caller has role at least.
func (h *Handler) need(role Role, fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.Authenticate != nil {
			got, ok := h.cfg.Authenticate(r)
			switch {
			case !ok:
				w.Header().Set("WWW-Authenticate", `Bearer realm="quorumlock"`)
				h.fail(w, r, errUnauthenticated, false)
				return
			case got < role:
				h.fail(w, r, errForbidden, false)
				return
			}
		}
		fn(w, r)
	})
}

// begin makes the checks every handler starts with: that the backend
// offers the endpoint (missing: the error that says it does not, nil if
// it does) and that the query names only the endpoint's parameters
// (known). It answers a failed check itself and returns false.
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, missing error, known ...string) (url.Values, bool) {
	if missing != nil {
		h.fail(w, r, missing, false)
		return nil, false
	}
	q, err := query(r, known...)
	if err != nil {
		h.fail(w, r, err, false)
		return nil, false
	}
	return q, true
}

// noSessions is errNoSessions in local mode, nil in cluster mode.
func (h *Handler) noSessions() error {
	if h.sessions == nil {
		return errNoSessions
	}
	return nil
}

// noOperator is errNoOperator without an Operator, else nil.
func (h *Handler) noOperator() error {
	if h.op == nil {
		return errNoOperator
	}
	return nil
}

// opCtx bounds a call that has no wait of its own.
func (h *Handler) opCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.OpTimeout)
}

// logPath is r's path for logs: a session's secret, in the path of the
// session endpoints, is cut off (the query, which may carry a session or a
// lease key, is never logged).
func logPath(r *http.Request) string {
	// The session path is matched decoded (a '.' may come as %2E): cut
	// the decoded form.
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/sessions/"); ok {
		if id, _, found := strings.Cut(rest, "."); found {
			return "/v1/sessions/" + url.PathEscape(id) + ".…"
		}
	}
	return r.URL.EscapedPath()
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush passes a flush through (a snapshot streams).
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
