package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

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

// workload is the recorded client side of a scenario: workers loop
// acquire -> Observe -> fenced write -> hold briefly -> Observe -> fenced
// write -> Observe -> release, every call recorded in rec, the writes going
// through fence. The Observe after the critical section lets the checker
// catch two holders at once (history.HeldAfterEnd).
type workload struct {
	c *cluster
	// mu guards rec and fence: a worker read-locks it for one whole
	// iteration, rotate write-locks it to start a new round (rounds_test.go).
	mu    sync.RWMutex
	rec   *history.Recorder
	fence *history.Fence
	// acquired, if set, is called by worker w after each successful
	// Acquire it invoked at started.
	acquired func(w int, started time.Time)

	accepted, rejected atomic.Int64 // fenced writes
	holding            []atomic.Int32
}

func newWorkload(c *cluster) *workload {
	rec := history.NewRecorder()
	return &workload{
		c:       c,
		rec:     rec,
		fence:   history.NewFence(rec, history.FenceConfig{}),
		holding: make([]atomic.Int32, c.Size()),
	}
}

// holds reports how many workers of node i hold a lease right now (as far
// as they know).
func (wl *workload) holds(i int) int { return int(wl.holding[i].Load()) }

// write is one fenced write by client w, counted.
func (wl *workload) write(ctx context.Context, fence *history.Fence, w int, lease lock.Lease) {
	err := fence.Write(ctx, w, lease.Name(), lease.Token())
	switch {
	case err == nil:
		wl.accepted.Add(1)
	case errors.Is(err, history.ErrStaleToken):
		wl.rejected.Add(1)
	}
}

// worker runs client w on node i, contending for name until ctx ends. It
// acquires with a 3 s timeout and makes a fresh Locker whenever its node was
// killed and restarted (ErrClosed).
func (wl *workload) worker(ctx context.Context, w, i int, name string, rng *rand.Rand) {
	for ctx.Err() == nil {
		nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		l, err := wl.c.NewLocker(nctx, i)
		cancel()
		if err != nil {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		for ctx.Err() == nil && !wl.iterate(ctx, w, i, l, name, rng) {
		}
		_ = l.Close()
	}
}

// iterate is one acquire ... release of worker w, recorded in the current
// round; it reports whether l is closed.
func (wl *workload) iterate(ctx context.Context, w, i int, l lock.Locker, name string, rng *rand.Rand) (closed bool) {
	wl.mu.RLock()
	defer wl.mu.RUnlock()
	rec, fence := wl.rec, wl.fence
	started := time.Now()
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	lease, err := rec.Acquire(actx, w, l, name)
	cancel()
	if errors.Is(err, lock.ErrClosed) {
		return true
	}
	if err != nil {
		sleep(ctx, 10*time.Millisecond)
		return false
	}
	if wl.acquired != nil {
		wl.acquired(w, started)
	}
	wl.holding[i].Add(1)
	if rec.Observe(w, lease) {
		wl.write(ctx, fence, w, lease)
		time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		if rec.Observe(w, lease) {
			wl.write(ctx, fence, w, lease)
		}
	}
	rec.Observe(w, lease)
	wl.holding[i].Add(-1)
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_ = rec.Release(rctx, w, lease)
	cancel()
	return false
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
	c := newCluster(t, size, opts...)
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

// start runs workers workers, worker w on node w%size and name
// w%len(names), each with its own seeded rng; the returned func stops them
// and waits (idempotent).
func (wl *workload) start(workers int, names []string, seed int64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			wl.worker(ctx, w, w%wl.c.Size(), names[w%len(names)], rand.New(rand.NewPCG(uint64(seed), uint64(w+1))))
		})
	}
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
}
