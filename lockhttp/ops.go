package lockhttp

import (
	"net/http"
)

type statusBody struct {
	ID           string       `json:"id"`
	State        string       `json:"state"`
	Leader       string       `json:"leader"`
	Term         uint64       `json:"term"`
	CommitIndex  uint64       `json:"commit_index"`
	AppliedIndex uint64       `json:"applied_index"`
	Protocol     int          `json:"protocol"`
	Sessions     int          `json:"sessions"`
	Locks        int          `json:"locks"`
	Members      []memberBody `json:"members"`
}

type memberBody struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

// status: GET /v1/status, this replica's view of the cluster (not a
// linearizable read).
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.begin(w, r, h.noOperator()); !ok {
		return
	}
	st := h.op.Stats()
	members, err := h.op.Members()
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	body := statusBody{
		ID: st.ID, State: st.State, Leader: st.LeaderID, Term: st.Term, CommitIndex: st.CommitIndex,
		AppliedIndex: st.AppliedIndex, Protocol: st.Protocol, Sessions: st.Sessions, Locks: st.Locks, Members: []memberBody{},
	}
	for _, m := range members {
		body.Members = append(body.Members, memberBody{ID: m.ID, Addr: m.Addr, Voter: m.Voter, Leader: m.Leader})
	}
	writeJSON(w, http.StatusOK, body)
}

// transfer: POST /v1/leader/transfer (admin), at the leader.
func (h *Handler) transfer(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.begin(w, r, h.noOperator()); !ok {
		return
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	if err := h.op.TransferLeadership(ctx); err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Leader string `json:"leader"` // as this replica knows it now ("" while unknown)
	}{h.op.Stats().LeaderID})
}

// snapshot: GET /v1/snapshot (admin): the store's state as a backup that
// node.Restore reads. Its size is known only once written, so it is sent
// chunked; a backup that fails midway ends the response early (the client
// sees a truncated body, which Restore refuses).
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.begin(w, r, h.noOperator()); !ok {
		return
	}
	cw := &countingWriter{w: w, before: func() {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="quorumlock.snapshot"`)
		w.WriteHeader(http.StatusOK)
	}}
	info, err := h.op.Snapshot(r.Context(), cw)
	if err != nil {
		if cw.n == 0 {
			h.fail(w, r, err, false)
			return
		}
		h.log.Warn("snapshot failed while sending", "bytes", cw.n, "error", err)
		panic(http.ErrAbortHandler) // abort the response: the client must not take a cut backup for whole
	}
	h.log.Info("snapshot sent", "index", info.Index, "term", info.Term, "bytes", info.Size)
}

// countingWriter writes to w, calling before first.
type countingWriter struct {
	w      http.ResponseWriter
	before func()
	n      int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n == 0 && c.before != nil {
		c.before()
		c.before = nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// healthz: GET /healthz, 200 while the process serves.
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

// readyz: GET /readyz, 200 when Config.Ready says the store can serve.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ready != nil {
		if err := h.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Detail: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ready"})
}

// metrics: GET /metrics, Config.Metrics.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Metrics == nil {
		h.fail(w, r, errNotFound, false)
		return
	}
	h.cfg.Metrics.ServeHTTP(w, r)
}
