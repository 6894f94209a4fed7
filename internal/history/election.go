package history

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Elections (doc.go, "Elections"): what candidates and observers of one
// election saw, on one logical clock. CheckElection judges it.

// ElectionHistory is a recorded election: every Campaign call with what
// its candidate saw of the term, and every state an observer received or
// Leader answered.
type ElectionHistory struct {
	Campaigns []Campaign `json:"campaigns"`
	Sightings []Sighting `json:"sightings"`
}

// Campaign is one Campaign call and, if it won, its term as the candidate
// saw it. Ticks are the recorder's logical clock, as Op's.
type Campaign struct {
	Candidate int `json:"candidate"`
	// Value is the Campaign's value: unique per call, it ties observed
	// states to the call they came from.
	Value string `json:"value"`
	// Token is the term's token (Outcome OK), or 0.
	Token uint64 `json:"token,omitempty"`
	// Outcome is OK (elected), Failed (refused: no effect) or Unknown
	// (ended without a definite answer: it may have been granted), or
	// Pending (not returned).
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"err,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return,omitempty"`
	// LastLive is the tick of the candidate's last look at the term that
	// found it held (0: none): the term's Done closed after it.
	LastLive int64 `json:"last_live,omitempty"`
	// EndSeen is the tick of the first look that found the term ended (0:
	// none): Done closed before it. EndErr is the term's Err then.
	EndSeen int64  `json:"end_seen,omitempty"`
	EndErr  string `json:"end_err,omitempty"`
	// Proclaims and Resign are the term's calls (Resign nil if none).
	Proclaims []Step `json:"proclaims,omitempty"`
	Resign    *Step  `json:"resign,omitempty"`
	// CallAt and ReturnAt are wall-clock offsets from the recorder's start.
	CallAt   time.Duration `json:"call_at"`
	ReturnAt time.Duration `json:"return_at,omitempty"`
}

// Step is a call on a term: a Proclaim (Value is the proclaimed value) or
// the resign. Outcome as Classify maps a Refresh's or a Release's error.
type Step struct {
	Value   string  `json:"value,omitempty"`
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"err,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return,omitempty"`
}

// Sighting is one state of the election that an observer received from
// its Observe stream, or that Leader answered (Stream 0).
type Sighting struct {
	Observer int    `json:"observer"`
	Stream   int    `json:"stream"`
	Token    uint64 `json:"token,omitempty"` // 0: the seat was empty
	Value    string `json:"value,omitempty"`
	Skipped  int    `json:"skipped,omitempty"`
	// At is the tick at which the state was received: the store was in it
	// before then.
	At     int64         `json:"at"`
	AtWall time.Duration `json:"at_wall"`
}

// ElectionRecorder records an ElectionHistory. It is safe for concurrent
// use; record every candidate and observer of one check into one
// ElectionRecorder.
type ElectionRecorder struct {
	start time.Time

	mu    sync.Mutex
	clock int64
	h     ElectionHistory
}

// NewElectionRecorder returns an empty ElectionRecorder whose wall clock
// starts now.
func NewElectionRecorder() *ElectionRecorder {
	return &ElectionRecorder{start: time.Now()}
}

// tick takes the next tick; r.mu held.
func (r *ElectionRecorder) tick() int64 {
	r.clock++
	return r.clock
}

// History returns a copy of everything recorded so far.
func (r *ElectionRecorder) History() ElectionHistory {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := ElectionHistory{
		Campaigns: append([]Campaign(nil), r.h.Campaigns...),
		Sightings: append([]Sighting(nil), r.h.Sightings...),
	}
	for i := range h.Campaigns {
		c := &h.Campaigns[i]
		c.Proclaims = append([]Step(nil), c.Proclaims...)
		if c.Resign != nil {
			resign := *c.Resign
			c.Resign = &resign
		}
	}
	return h
}

// HeldTerm is a term won through ElectionRecorder.Campaign: its calls and
// looks are recorded against its Campaign. One goroutine at a time.
type HeldTerm struct {
	r    *ElectionRecorder
	i    int
	term lock.Term
}

// Campaign records e.Campaign(ctx, election, value, opts...) by candidate.
// value must be unique among the recorded Campaigns (and their
// Proclaims). On success the term comes wrapped in a HeldTerm.
func (r *ElectionRecorder) Campaign(ctx context.Context, candidate int, e lock.Elector, election, value string, opts ...lock.Option) (*HeldTerm, error) {
	r.mu.Lock()
	i := len(r.h.Campaigns)
	r.h.Campaigns = append(r.h.Campaigns, Campaign{Candidate: candidate, Value: value, Call: r.tick(), CallAt: time.Since(r.start)})
	r.mu.Unlock()

	term, err := e.Campaign(ctx, election, value, opts...)

	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.h.Campaigns[i]
	c.Return, c.ReturnAt = r.tick(), time.Since(r.start)
	if err != nil {
		c.Outcome, c.Err = grantFailed(err), err.Error()
		return nil, err
	}
	c.Outcome, c.Token = OK, term.Token()
	return &HeldTerm{r: r, i: i, term: term}, nil
}

// grantFailed is the Outcome of a Campaign or Acquire that failed with
// err: Failed if the call was refused before anything was asked of the
// store (a bad name or option, a type it does not offer), else Unknown:
// it may have been granted.
func grantFailed(err error) Outcome {
	if errors.Is(err, lock.ErrInvalidName) || errors.Is(err, lock.ErrInvalidOption) || errors.Is(err, lock.ErrUnsupported) {
		return Failed
	}
	return Unknown
}

// Term is the term.
func (h *HeldTerm) Term() lock.Term { return h.term }

// Look records the candidate looking at its term (term.Err()) and reports
// whether it was held. The tick is taken before the look, so a held term
// was held after it.
func (h *HeldTerm) Look() bool {
	r := h.r
	r.mu.Lock()
	at := r.tick()
	r.mu.Unlock()
	err := h.term.Err()
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &r.h.Campaigns[h.i]
	if err == nil {
		c.LastLive = at
		return true
	}
	if c.EndSeen == 0 {
		c.EndSeen, c.EndErr = r.tick(), err.Error()
	}
	return false
}

// Proclaim records term.Proclaim(ctx, value).
func (h *HeldTerm) Proclaim(ctx context.Context, value string) error {
	r := h.r
	r.mu.Lock()
	c := &r.h.Campaigns[h.i]
	c.Proclaims = append(c.Proclaims, Step{Value: value, Call: r.tick()})
	k := len(c.Proclaims) - 1
	r.mu.Unlock()
	err := h.term.Proclaim(ctx, value)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finish(&r.h.Campaigns[h.i].Proclaims[k], Classify(Refresh, 0, err), err)
	return err
}

// Resign records term.Release(ctx), then looks at the term (which a
// resign ends at once, lock.Term).
func (h *HeldTerm) Resign(ctx context.Context) error {
	r := h.r
	r.mu.Lock()
	r.h.Campaigns[h.i].Resign = &Step{Call: r.tick()}
	r.mu.Unlock()
	err := h.term.Release(ctx)
	r.mu.Lock()
	r.finish(r.h.Campaigns[h.i].Resign, Classify(Release, 0, err), err)
	r.mu.Unlock()
	h.Look()
	return err
}

// finish stamps a step's return; r.mu held.
func (r *ElectionRecorder) finish(step *Step, out Outcome, err error) {
	step.Return, step.Outcome = r.tick(), out
	if err != nil {
		step.Err = err.Error()
	}
}

// Sight records that observer received info from its Observe stream
// number stream (counted from 1).
func (r *ElectionRecorder) Sight(observer, stream int, info lock.LeaderInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Sightings = append(r.h.Sightings, Sighting{
		Observer: observer, Stream: stream, Token: info.Token, Value: info.Value, Skipped: info.Skipped,
		At: r.tick(), AtWall: time.Since(r.start),
	})
}

// Leader records e.Leader(ctx, election) by observer: a term or
// lock.ErrNoLeader is recorded as a Sighting of stream 0, any other error
// not at all.
func (r *ElectionRecorder) Leader(ctx context.Context, observer int, e lock.Elector, election string) (lock.LeaderInfo, error) {
	info, err := e.Leader(ctx, election)
	switch {
	case err == nil:
		r.Sight(observer, 0, info)
	case errors.Is(err, lock.ErrNoLeader):
		r.Sight(observer, 0, lock.LeaderInfo{Election: election})
	}
	return info, err
}
