package clustertest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/node"
)

// The frame every nemesis scenario shares: the seed, the soak length, the
// liveness tracker, the history check, the figures log lines.

// nemesisSeed returns the -seed flag, or one from the clock, and logs it
// with the command line that replays it.
func nemesisSeed(t *testing.T) int64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -run '^%s$' -seed=%d)", seed, t.Name(), seed)
	return seed
}

// requireHistory checks rec's history with history.Require (porcupine per
// name plus the token and fence checks) and fails t on a violation. The
// failure files go to a fresh directory under os.TempDir() that outlives
// the test; it is printed and kept only if t failed (whatever failed it:
// then the history is also dumped there as history.json), removed
// otherwise. Call it once every recorded operation has returned.
func requireHistory(t *testing.T, h history.History) {
	t.Helper()
	dir, err := os.MkdirTemp("", "quorumlock-history-")
	if err != nil {
		t.Fatalf("history directory: %v", err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
			return
		}
		path := filepath.Join(dir, "history.json")
		if b, err := json.Marshal(h); err == nil {
			_ = os.WriteFile(path, b, 0o644)
		}
		t.Logf("history files kept in %s (history.json: the whole history, replayable with history.Check)", dir)
	})
	history.Require(t, h, history.Options{Dir: dir, Timeout: 30 * time.Second})
}

// liveness collects, once armed, the first successful acquire of every
// worker; wait fails t listing the workers that acquired nothing in time.
type liveness struct {
	since atomic.Pointer[time.Time]
	live  []atomic.Bool
	done  chan int
}

func newLiveness(workers int) *liveness {
	return &liveness{live: make([]atomic.Bool, workers), done: make(chan int, workers)}
}

// arm starts counting: only acquires invoked from now on count.
func (lv *liveness) arm() {
	now := time.Now()
	lv.since.Store(&now)
}

// acquired records that worker w acquired after invoking at started.
func (lv *liveness) acquired(w int, started time.Time) {
	if s := lv.since.Load(); s != nil && !started.Before(*s) && lv.live[w].CompareAndSwap(false, true) {
		lv.done <- w
	}
}

// wait waits up to d (from now) for every worker; it returns how long the
// last one took after arm.
func (lv *liveness) wait(t *testing.T, d time.Duration, what string) time.Duration {
	t.Helper()
	deadline := time.After(d)
	for range lv.live {
		select {
		case <-lv.done:
		case <-deadline:
			var stuck []int
			for w := range lv.live {
				if !lv.live[w].Load() {
					stuck = append(stuck, w)
				}
			}
			t.Errorf("liveness: workers %v acquired nothing within %v after %s", stuck, d, what)
			return d
		}
	}
	return time.Since(*lv.since.Load())
}

// scenario is the frame every nemesis test shares: an rng from the
// (printed) seed, a cluster, and workers contending under a recorded workload
// whose acquisitions feed a liveness tracker.
type scenario struct {
	rng  *rand.Rand
	c    *cluster
	wl   *workload
	lv   *liveness
	stop func() // stops the workers and waits for them (idempotent; also at cleanup)
	// rounds checks the history of a long (soak) run in rounds.
	rounds *rounds
}

// startScenario starts a cluster of size nodes (opts edit each node's
// Config) and workers workers on names. acquired, if not nil, is called by
// worker w after each successful Acquire it invoked at started.
func startScenario(t *testing.T, size, workers int, names []string, acquired func(w int, started time.Time), opts ...func(*node.Config)) *scenario {
	t.Helper()
	seed := nemesisSeed(t)
	logs := newNodeLog(t)
	c := newCluster(t, size, append([]func(*node.Config){logs.edit}, opts...)...)
	c.net.seed(seed)
	wl := newWorkload(c)
	lv := newLiveness(workers)
	wl.acquired = lv.acquired
	if acquired != nil {
		wl.acquired = func(w int, started time.Time) {
			acquired(w, started)
			lv.acquired(w, started)
		}
	}
	s := &scenario{rng: newRand(seed), c: c, wl: wl, lv: lv}
	s.stop = wl.start(workers, names, seed)
	t.Cleanup(s.stop)
	s.rounds = startRounds(t, wl)
	return s
}

// finish ends a scenario once its nemesis has stopped (after names how it
// ended, for the messages): every worker must acquire within 20 s, then the
// workers stop, summary is logged with the fence's counts, no fenced write
// may have been rejected (no scenario that uses it pauses a worker, and a
// holder's lease ends before the name is granted again), and the history is
// checked.
func (s *scenario) finish(t *testing.T, after, summary string) {
	t.Helper()
	s.lv.arm()
	last := s.lv.wait(t, 20*time.Second, after)
	s.stop()
	t.Logf("%s; every worker acquired %v after %s; fenced writes accepted %d, rejected %d",
		summary, last.Round(time.Millisecond), after, s.wl.accepted.Load(), s.wl.rejected.Load())
	assert.NotZero(t, s.wl.accepted.Load())
	assert.Zero(t, s.wl.rejected.Load(), "fenced writes rejected (I2/I3)")
	s.rounds.finish(t)
}

// paced runs step until the soak (soak(t)) is over, each time after a
// pause of lo plus up to spread (whole milliseconds drawn from s.rng): the
// nemesis's pace, not a wait for state; the workers' load runs meanwhile.
func (s *scenario) paced(t *testing.T, lo, spread time.Duration, step func()) {
	end := time.Now().Add(soak(t))
	for time.Now().Before(end) {
		sleep(t.Context(), lo+time.Duration(s.rng.IntN(int(spread.Milliseconds())))*time.Millisecond)
		step()
	}
}

// soak is how long a nemesis runs: QUORUMLOCK_SOAK (a duration), else 4 s,
// which keeps the package (scenarios in parallel) under a minute for CI;
// the pass counts in README.md come from many such short runs with
// different seeds.
func soak(t *testing.T) time.Duration {
	if s := os.Getenv("QUORUMLOCK_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("QUORUMLOCK_SOAK: %v", err)
		}
		return d
	}
	return 4 * time.Second
}

// figures logs measured durations as "figure <name> <ms> ..." lines, which
// the failover table in README.md is computed from (see there).
func figures(t *testing.T, name string, ds []time.Duration) {
	t.Helper()
	if len(ds) == 0 {
		return
	}
	ms := make([]string, len(ds))
	for i, d := range ds {
		ms[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	t.Logf("figure %s %s", name, strings.Join(ms, " "))
}

// sleep lets d pass, or less if ctx ends first. It is for letting time
// pass on purpose (a nemesis's pace, a hold, a fault's duration), each use
// saying why; a wait for some state polls it with a deadline instead.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// newRand is a nemesis's rng from its seed.
func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0)) }
