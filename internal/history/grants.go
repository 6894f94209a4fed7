package history

import (
	"context"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Many holders (semaphores and read-write locks): what each holder saw of
// its grants, on one logical clock. CheckGrants judges it.

// Mode is what a grant gives: a permit of a semaphore, a read or the write
// lease of a read-write lock.
type Mode string

// Modes.
const (
	PermitMode Mode = "permit"
	ReadMode   Mode = "read"
	WriteMode  Mode = "write"
)

// GrantHistory is a recorded run of semaphores and read-write locks: every
// Acquire call with what its holder saw of the lease.
type GrantHistory struct {
	Grants []Grant `json:"grants"`
}

// Grant is one Acquire call (AcquirePermit, AcquireRead, AcquireWrite) and,
// if it was granted, its lease as the holder saw it. Ticks are the
// recorder's logical clock, as Op's.
type Grant struct {
	Worker int    `json:"worker"`
	Name   string `json:"name"`
	Mode   Mode   `json:"mode"`
	// Limit is the semaphore's limit (PermitMode), else 0.
	Limit int `json:"limit,omitempty"`
	// Token and Slot are the lease's (Outcome OK; Slot for permits).
	Token uint64 `json:"token,omitempty"`
	Slot  int    `json:"slot,omitempty"`
	// Outcome is OK (granted), Failed (refused: no effect), Unknown (ended
	// without a definite answer) or Pending (not returned).
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"err,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return,omitempty"`
	// LastLive is the tick of the holder's last look that found the lease
	// held (0: none): its Done closed after it. EndSeen is the tick of the
	// first look that found it ended (0: none): Done closed before it.
	LastLive int64  `json:"last_live,omitempty"`
	EndSeen  int64  `json:"end_seen,omitempty"`
	EndErr   string `json:"end_err,omitempty"`
	// Release is the lease's Release (nil if none).
	Release *Step `json:"release,omitempty"`
	// CallAt and ReturnAt are wall-clock offsets from the recorder's start.
	CallAt   time.Duration `json:"call_at"`
	ReturnAt time.Duration `json:"return_at,omitempty"`
}

// GrantRecorder records a GrantHistory. It is safe for concurrent use;
// record every holder of one check into one GrantRecorder.
type GrantRecorder struct {
	start time.Time

	mu    sync.Mutex
	clock int64
	h     GrantHistory
}

// NewGrantRecorder returns an empty GrantRecorder whose wall clock starts
// now.
func NewGrantRecorder() *GrantRecorder {
	return &GrantRecorder{start: time.Now()}
}

// tick takes the next tick; r.mu held.
func (r *GrantRecorder) tick() int64 {
	r.clock++
	return r.clock
}

// History returns a copy of everything recorded so far.
func (r *GrantRecorder) History() GrantHistory {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := GrantHistory{Grants: append([]Grant(nil), r.h.Grants...)}
	for i := range h.Grants {
		if g := &h.Grants[i]; g.Release != nil {
			rel := *g.Release
			g.Release = &rel
		}
	}
	return h
}

// HeldLease is a lease granted through GrantRecorder.Acquire: its looks
// and release are recorded against its Grant. One goroutine at a time.
type HeldLease struct {
	r     *GrantRecorder
	i     int
	lease lock.Lease
}

// Acquire records acquire(ctx), which must make one Acquire call of mode
// on name (limit: the semaphore's, for PermitMode). A granted PermitMode
// lease must be a lock.Permit, its slot is recorded. On success the lease
// comes wrapped in a HeldLease.
func (r *GrantRecorder) Acquire(ctx context.Context, worker int, name string, mode Mode, limit int, acquire func(context.Context) (lock.Lease, error)) (*HeldLease, error) {
	r.mu.Lock()
	i := len(r.h.Grants)
	r.h.Grants = append(r.h.Grants, Grant{Worker: worker, Name: name, Mode: mode, Limit: limit, Call: r.tick(), CallAt: time.Since(r.start)})
	r.mu.Unlock()

	lease, err := acquire(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	g := &r.h.Grants[i]
	g.Return, g.ReturnAt = r.tick(), time.Since(r.start)
	if err != nil {
		g.Outcome, g.Err = grantFailed(err), err.Error()
		return nil, err
	}
	g.Outcome, g.Token = OK, lease.Token()
	if p, ok := lease.(lock.Permit); ok {
		g.Slot = p.Slot()
	}
	return &HeldLease{r: r, i: i, lease: lease}, nil
}

// Lease is the lease.
func (h *HeldLease) Lease() lock.Lease { return h.lease }

// Look records the holder looking at its lease (lease.Err()) and reports
// whether it was held. The tick is taken before the look, so a held lease
// was held after it.
func (h *HeldLease) Look() bool {
	r := h.r
	r.mu.Lock()
	at := r.tick()
	r.mu.Unlock()
	err := h.lease.Err()
	r.mu.Lock()
	defer r.mu.Unlock()
	g := &r.h.Grants[h.i]
	if err == nil {
		g.LastLive = at
		return true
	}
	if g.EndSeen == 0 {
		g.EndSeen, g.EndErr = r.tick(), err.Error()
	}
	return false
}

// Release records lease.Release(ctx), then looks at the lease (which a
// release ends at once, lock.Lease).
func (h *HeldLease) Release(ctx context.Context) error {
	r := h.r
	r.mu.Lock()
	r.h.Grants[h.i].Release = &Step{Call: r.tick()}
	r.mu.Unlock()
	err := h.lease.Release(ctx)
	r.mu.Lock()
	step := r.h.Grants[h.i].Release
	step.Return, step.Outcome = r.tick(), Classify(Release, 0, err)
	if err != nil {
		step.Err = err.Error()
	}
	r.mu.Unlock()
	h.Look()
	return err
}
