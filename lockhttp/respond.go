package lockhttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// errorBody is every error answer.
type errorBody struct {
	Error  string `json:"error"`            // a short code (DESIGN.md, "Errors")
	Detail string `json:"detail,omitempty"` // the error message
}

// Errors of the handler itself.
var (
	errUnauthenticated = errors.New("lockhttp: missing or unknown bearer token")
	errForbidden       = errors.New("lockhttp: this endpoint needs the admin role")
	errNoSessions      = errors.New("lockhttp: this backend has no client sessions: acquire with ttl")
	errNoOperator      = errors.New("lockhttp: this backend does not offer it")
	errNotFound        = errors.New("lockhttp: not found")
)

// statusOf is the HTTP status and short code of err. waited says the call
// had a wait of its own, so that running out of it while queued is 408;
// any other call that runs out of time could not reach a quorum (503).
func statusOf(err error, waited bool) (int, string) {
	switch {
	case errors.Is(err, errBadParam), errors.Is(err, lock.ErrInvalidName), errors.Is(err, lock.ErrInvalidOption):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, node.ErrSessionExpired):
		return http.StatusNotFound, "session_expired"
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, lock.ErrHeld):
		return http.StatusConflict, "held"
	case errors.Is(err, lock.ErrNotHeld):
		return http.StatusConflict, "not_held"
	case errors.Is(err, lock.ErrLimit):
		return http.StatusTooManyRequests, "limit"
	case errors.Is(err, node.ErrUnsupported):
		return http.StatusServiceUnavailable, "upgrading" // before lock.ErrUnsupported, which it wraps
	case errors.Is(err, errNoSessions), errors.Is(err, errNoOperator), errors.Is(err, lock.ErrUnsupported):
		return http.StatusNotImplemented, "unsupported"
	case errors.Is(err, lock.ErrNoQuorum):
		return http.StatusServiceUnavailable, "no_quorum"
	case errors.Is(err, lock.ErrClosed):
		return http.StatusServiceUnavailable, "closed"
	case errors.Is(err, node.ErrNotLeader):
		return http.StatusConflict, "not_leader"
	case errors.Is(err, node.ErrMoved):
		return http.StatusConflict, "moved"
	case errors.Is(err, lock.ErrLost):
		// The replica's own session expired (it was cut off); it opens a
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

// fail answers err (see statusOf for waited).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, waited bool) {
	code, short := statusOf(err, waited)
	if r.Context().Err() != nil {
		short = "canceled" // the client left or the server is shutting down
	}
	if code >= 500 && code != http.StatusNotImplemented {
		h.log.Warn("request failed", "method", r.Method, "path", logPath(r), "status", code, "error", err)
	}
	writeJSON(w, code, errorBody{Error: short, Detail: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
