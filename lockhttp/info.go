package lockhttp

import (
	"net/http"

	"github.com/quorumlock/quorumlock/lock"
)

type infoBody struct {
	Name        string       `json:"name"`
	Held        bool         `json:"held"`
	Token       uint64       `json:"token,omitempty"`
	Owner       string       `json:"owner,omitempty"`
	Kind        string       `json:"kind"` // none, session or ttl
	Holder      string       `json:"holder,omitempty"`
	Node        string       `json:"node,omitempty"`
	SinceMS     int64        `json:"since_ms,omitempty"`
	ExpiresInMS int64        `json:"expires_in_ms,omitempty"`
	Waiters     int          `json:"waiters"`
	Queue       []waiterBody `json:"queue,omitempty"`
}

type waiterBody struct {
	Holder   string `json:"holder"`
	Node     string `json:"node,omitempty"`
	Owner    string `json:"owner,omitempty"`
	WaitedMS int64  `json:"waited_ms"`
}

type pageBody struct {
	Locks []infoBody `json:"locks"`
	Next  string     `json:"next,omitempty"` // the cursor of the next page; absent on the last
}

func infoOf(i lock.Info) infoBody {
	b := infoBody{
		Name: i.Name, Held: i.Held, Token: i.Token, Owner: i.Owner, Kind: i.Kind.String(), Holder: i.Holder,
		Node: i.Node, SinceMS: ms(i.Since), ExpiresInMS: ms(i.ExpiresIn), Waiters: i.Waiters,
	}
	for _, q := range i.Queue {
		b.Queue = append(b.Queue, waiterBody{Holder: q.Holder, Node: q.Node, Owner: q.Owner, WaitedMS: ms(q.Waited)})
	}
	return b
}

// inspect: GET /v1/locks/{name}?queue=N, a linearizable read on the
// backends that offer one.
func (h *Handler) inspect(w http.ResponseWriter, r *http.Request) {
	name, q, err := lockQuery(r, "queue")
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	limit := uint64(lock.DefaultQueueLimit)
	if n, ok, err := positive(q, "queue"); err != nil {
		h.fail(w, r, err, false)
		return
	} else if ok {
		limit = n
	}
	if limit > lock.MaxQueueLimit {
		limit = lock.MaxQueueLimit
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	info, err := h.cfg.Locker.Inspect(ctx, name, lock.WithQueueLimit(int(limit)))
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	writeJSON(w, http.StatusOK, infoOf(info))
}

// list: GET /v1/locks?prefix=&limit=&cursor=.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "prefix", "limit", "cursor")
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	lister, ok := h.cfg.Locker.(lock.Lister)
	if !ok {
		h.fail(w, r, errNoOperator, false)
		return
	}
	opts := []lock.ListOption{lock.WithCursor(q.Get("cursor"))}
	if n, ok, err := positive(q, "limit"); err != nil {
		h.fail(w, r, err, false)
		return
	} else if ok {
		opts = append(opts, lock.WithLimit(int(min(n, uint64(lock.MaxListLimit)))))
	}
	ctx, cancel := h.opCtx(r)
	defer cancel()
	page, err := lister.List(ctx, q.Get("prefix"), opts...)
	if err != nil {
		h.fail(w, r, err, false)
		return
	}
	body := pageBody{Locks: []infoBody{}, Next: page.Next}
	for _, i := range page.Locks {
		body.Locks = append(body.Locks, infoOf(i))
	}
	writeJSON(w, http.StatusOK, body)
}
