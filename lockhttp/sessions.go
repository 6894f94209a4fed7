package lockhttp

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/quorumlock/quorumlock/node"
)

// Client sessions (cluster mode only).

type sessionBody struct {
	Session string `json:"session"` // ID and secret: a credential
	TTLMS   int64  `json:"ttl_ms"`
}

type sessionInfoBody struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
	TTLMS int64  `json:"ttl_ms"`
	Node  string `json:"node"`
}

// openSession: POST /v1/sessions?ttl=DUR&owner=STR.
func (h *Handler) openSession(w http.ResponseWriter, r *http.Request) {
	q, ok := h.begin(w, r, h.noSessions(), "ttl", "owner")
	if !ok {
		return
	}
	ttl, given, err := duration(q, "ttl")
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	if !given {
		ttl = h.cfg.DefaultSessionTTL
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	s, err := h.sessions.OpenClientSession(ctx, ttl, q.Get("owner"))
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	if err := r.Context().Err(); err != nil {
		// The client left and will never learn the session: end it now
		// rather than let it expire.
		h.closeAbandoned(s)
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, sessionBody{Session: s.String(), TTLMS: ms(ttl)})
}

// renewSession: PUT /v1/sessions/{session}.
func (h *Handler) renewSession(w http.ResponseWriter, r *http.Request) {
	s, ok := h.sessionParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	ttl, err := h.sessions.RenewClientSession(ctx, s)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, sessionBody{Session: s.String(), TTLMS: ms(ttl)})
}

// closeSession: DELETE /v1/sessions/{session}.
func (h *Handler) closeSession(w http.ResponseWriter, r *http.Request) {
	s, ok := h.sessionParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	if err := h.sessions.CloseClientSession(ctx, s); err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// sessionInfo: GET /v1/sessions/{id}, by the public ID (a session string
// with its secret is accepted too; the secret is not checked).
func (h *Handler) sessionInfo(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.begin(w, r, h.noSessions()); !ok {
		return
	}
	id, err := publicID(r.PathValue("session"))
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	info, err := h.sessions.ClientSessionInfo(ctx, id)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, sessionInfoOf(info))
}

func sessionInfoOf(info node.ClientSessionInfo) sessionInfoBody {
	return sessionInfoBody{ID: publicIDOf(info.ID), Owner: info.Owner, TTLMS: ms(info.TTL), Node: info.Node}
}

// publicIDOf is a session's public ID as the API shows it (and as
// Inspect's holder).
func publicIDOf(id uint64) string { return fmt.Sprintf("%016x", id) }

// listSessions: GET /v1/sessions (admin), every client session.
func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.begin(w, r, h.noSessions()); !ok {
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	all, err := h.sessions.ListClientSessions(ctx)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	body := struct {
		Sessions []sessionInfoBody `json:"sessions"`
	}{Sessions: []sessionInfoBody{}}
	for _, info := range all {
		body.Sessions = append(body.Sessions, sessionInfoOf(info))
	}
	writeJSON(w, http.StatusOK, body)
}

// publicID parses a session's public ID: its hex ID, alone or before the
// secret.
func publicID(v string) (uint64, error) {
	if s, err := node.ParseClientSession(v); err == nil {
		return s.ID, nil
	}
	id, err := strconv.ParseUint(v, 16, 64)
	if err != nil || id == 0 || len(v) > 16 {
		return 0, fmt.Errorf("%w: session: want its ID (16 hex digits) or the session string", errBadParam)
	}
	return id, nil
}

// sessionParam parses the {session} path segment of a renew or close,
// which takes no query; false if it answered an error.
func (h *Handler) sessionParam(w http.ResponseWriter, r *http.Request) (node.ClientSession, bool) {
	if _, ok := h.begin(w, r, h.noSessions()); !ok {
		return node.ClientSession{}, false
	}
	s, err := node.ParseClientSession(r.PathValue("session"))
	if err != nil {
		h.fail(w, r, err, false)
		return node.ClientSession{}, false
	}
	return s, true
}

// closeAbandoned ends a session whose client left before it learned it.
func (h *Handler) closeAbandoned(s node.ClientSession) {
	ctx, cancel := h.cleanupCtx()
	defer cancel()
	if err := h.sessions.CloseClientSession(ctx, s); err != nil {
		h.log.Warn("closing a session whose client went away", "session", publicIDOf(s.ID), "error", err)
	}
}
