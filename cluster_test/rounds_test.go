package clustertest

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/history"
)

// roundLength is how long one round of a soak run lasts. Each round's
// history is checked on its own: porcupine's search over one long history
// (hundreds of thousands of operations, as a few minutes of soak record)
// runs out of time and memory. Runs of the default length are one round.
const roundLength = 20 * time.Second

// rounds cuts a long run's history into rounds and checks each while the
// run goes on. At a cut every worker has finished its iteration (acquire
// … release, every call returned), so a round's history is complete in
// itself. A round starts from a free lock model; a lease left behind by a
// release of unknown outcome does not contradict that (the round's first
// grant of the name simply comes after that lease ends). What a cut would
// lose — that tokens keep increasing across it — is checked directly: every
// token granted in a round must be greater than every token granted in the
// rounds before.
type rounds struct {
	wl       *workload
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}

	mu       sync.Mutex
	n, ops   int               // rounds checked, their operations
	failures []string          // what went wrong in checked rounds
	maxToken map[string]uint64 // greatest token granted per name so far
}

// startRounds starts cutting wl's history every roundLength if the run is
// long enough to need it.
func startRounds(t *testing.T, wl *workload) *rounds {
	r := &rounds{wl: wl, stop: make(chan struct{}), done: make(chan struct{}), maxToken: map[string]uint64{}}
	if soak(t) <= 2*roundLength {
		close(r.done)
		return r
	}
	go r.loop()
	t.Cleanup(r.halt)
	return r
}

func (r *rounds) loop() {
	defer close(r.done)
	tick := time.NewTicker(roundLength)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			r.check(r.wl.rotate())
		}
	}
}

// halt stops cutting and waits for a check in progress.
func (r *rounds) halt() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
}

// check checks one finished round: tokens against the earlier rounds, then
// history.Check. Failure files stay in a temporary directory, named in
// the failure.
func (r *rounds) check(h history.History) {
	bad := r.tokens(h)
	dir, err := os.MkdirTemp("", "quorumlock-history-")
	if err != nil {
		bad = append(bad, err.Error())
	} else {
		res := history.Check(h, history.Options{Dir: dir, Timeout: time.Minute})
		if res.OK() {
			_ = os.RemoveAll(dir)
		} else {
			bad = append(bad, fmt.Sprintf("%s (files kept in %s)", res, dir))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.ops += len(h)
	for _, b := range bad {
		r.failures = append(r.failures, fmt.Sprintf("round %d: %s", r.n, b))
	}
}

// tokens checks that every grant in h carries a token above every grant of
// the earlier rounds, and raises the marks.
func (r *rounds) tokens(h history.History) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []string
	high := map[string]uint64{}
	for _, op := range h {
		if (op.Kind != history.Acquire && op.Kind != history.TryAcquire) || op.Outcome != history.OK {
			continue
		}
		if op.Token <= r.maxToken[op.Name] {
			bad = append(bad, fmt.Sprintf("I2: %s granted token %d, not above %d granted in an earlier round", op.Name, op.Token, r.maxToken[op.Name]))
		}
		high[op.Name] = max(high[op.Name], op.Token)
	}
	for name, tok := range high {
		r.maxToken[name] = max(r.maxToken[name], tok)
	}
	return bad
}

// finish checks the last round once the workers have stopped (as
// requireHistory: fatal on a violation) and reports the earlier rounds.
func (r *rounds) finish(t *testing.T) {
	t.Helper()
	r.halt()
	last := r.wl.rotate()
	bad := r.tokens(last)
	r.mu.Lock()
	failures := append(r.failures, bad...)
	n, ops := r.n, r.ops
	r.mu.Unlock()
	if n > 0 {
		t.Logf("%d earlier rounds of %v checked (%d operations)", n, roundLength, ops)
	}
	for _, f := range failures {
		t.Error(f)
	}
	requireHistory(t, last)
}

// rotate ends the current round once every worker has finished its
// iteration, starts a new recorder and fence, and returns the ended round's
// history.
func (wl *workload) rotate() history.History {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	h := wl.rec.History()
	wl.rec = history.NewRecorder()
	wl.fence = history.NewFence(wl.rec, history.FenceConfig{})
	return h
}
