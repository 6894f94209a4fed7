package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// history records what the replicas saw — the terms their Campaigns won
// and the states their observers delivered — prints each as it happens,
// and checks the election's promises as it goes: the tokens of successive
// terms strictly increase, every observer's stream never goes back to an
// older term, and no replica is elected while another's term is live
// (its Done not closed).
type history struct {
	mu      sync.Mutex
	out     io.Writer
	outErr  error // the first failed write to out
	start   time.Time
	changed chan struct{} // closed and replaced at every record

	terms      []termRecord
	live       map[string]lock.Term // by replica: the terms not seen ended
	twoLeaders int                  // elections while another term was live
	backwards  int                  // a term's or an observed token below an earlier one
	skipped    int                  // states observers collapsed (LeaderInfo.Skipped)
	seen       []sighting
	streams    map[string]*stream // by replica: its current Observe call
}

// termRecord is a Campaign won: by which replica, its token, when.
type termRecord struct {
	replica string
	token   uint64
	at      time.Time
}

// sighting is a state an observer delivered: on which replica, when.
type sighting struct {
	replica string
	info    lock.LeaderInfo
	at      time.Time
}

// stream is one Observe call's deliveries so far.
type stream struct {
	last   lock.LeaderInfo // the latest state with a leader
	latest lock.LeaderInfo // the latest state
	n      int
}

func newHistory(out io.Writer) *history {
	return &history{
		out: out, start: time.Now(), changed: make(chan struct{}),
		live: map[string]lock.Term{}, streams: map[string]*stream{},
	}
}

// printf writes one line, stamped with the time since the start; h.mu held.
func (h *history) printf(format string, args ...any) {
	_, err := fmt.Fprintf(h.out, "%7.3fs %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
	if h.outErr == nil {
		h.outErr = err
	}
}

// logf is printf for callers that do not hold h.mu.
func (h *history) logf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.printf(format, args...)
}

// notify wakes the waiters of wait; h.mu held.
func (h *history) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// elected records replica's term t, just won, checking it against the
// terms before it.
func (h *history) elected(replica string, t lock.Term, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.notify()
	now := time.Now()
	h.printf("%s elected: token=%d value=%q", replica, t.Token(), value)
	if n := len(h.terms); n > 0 && t.Token() <= h.terms[n-1].token {
		h.backwards++
		h.printf("VIOLATION: token %d after token %d", t.Token(), h.terms[n-1].token)
	}
	for other, ot := range h.live {
		select {
		case <-ot.Done():
			delete(h.live, other)
		default:
			h.twoLeaders++
			h.printf("VIOLATION: %s elected while %s's term (token %d) is live", replica, other, ot.Token())
		}
	}
	h.live[replica] = t
	h.terms = append(h.terms, termRecord{replica: replica, token: t.Token(), at: now})
}

// observing starts a new stream for replica's Observe call.
func (h *history) observing(replica string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams[replica] = &stream{}
}

// observed records a state replica's observer delivered.
func (h *history) observed(replica string, info lock.LeaderInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.notify()
	s := h.streams[replica]
	if info.Elected() && s.n > 0 && info.Token < s.last.Token {
		h.backwards++
		h.printf("VIOLATION: %s observed token %d after token %d", replica, info.Token, s.last.Token)
	}
	if info.Elected() {
		s.last = info
	}
	s.latest = info
	s.n++
	h.skipped += info.Skipped
	h.seen = append(h.seen, sighting{replica: replica, info: info, at: time.Now()})
	h.printf("  observe@%s %s", replica, describe(info))
}

// describe is one observed state as the output shows it.
func describe(info lock.LeaderInfo) string {
	var b strings.Builder
	if !info.Elected() {
		b.WriteString("no leader")
	} else {
		fmt.Fprintf(&b, "token=%d value=%q holder=%s", info.Token, info.Value, info.Holder)
	}
	if info.Skipped > 0 {
		fmt.Fprintf(&b, " skipped=%d", info.Skipped)
	}
	return b.String()
}

// wait polls cond (h.mu held) at every record until it holds or ctx ends.
func (h *history) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		h.mu.Lock()
		ok, changed := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		}
	}
}

// holder is the replica of the latest term and its token ("" before the
// first).
func (h *history) holder() (string, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holderLocked()
}

// holderLocked is holder with h.mu held.
func (h *history) holderLocked() (string, uint64) {
	if len(h.terms) == 0 {
		return "", 0
	}
	t := h.terms[len(h.terms)-1]
	return t.replica, t.token
}

// term is replica's term of token, if it is the one recorded live.
func (h *history) term(replica string, token uint64) lock.Term {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.live[replica]; t != nil && t.Token() == token {
		return t
	}
	return nil
}

// settled reports, h.mu held, whether a term is won and every replica of
// live has an observer whose latest state shows it: the cluster is quiet
// and every replica is up.
func (h *history) settled(live []string) bool {
	if len(h.terms) == 0 {
		return false
	}
	token := h.terms[len(h.terms)-1].token
	for _, r := range live {
		s := h.streams[r]
		if s == nil || s.n == 0 || s.latest.Token != token {
			return false
		}
	}
	return true
}

// vacant reports, h.mu held, whether every replica of live has an
// observer whose latest state is an empty seat.
func (h *history) vacant(live []string) bool {
	for _, r := range live {
		s := h.streams[r]
		if s == nil || s.n == 0 || s.latest.Elected() {
			return false
		}
	}
	return true
}

// after finds, h.mu held, the first term won and the first state a
// replica other than killed observed, after at, with a token above token.
func (h *history) after(at time.Time, token uint64, killed string) (won, seen time.Time) {
	for _, t := range h.terms {
		if t.at.After(at) && t.token > token {
			won = t.at
			break
		}
	}
	for _, s := range h.seen {
		if s.at.After(at) && s.replica != killed && s.info.Token > token {
			seen = s.at
			break
		}
	}
	return won, seen
}
