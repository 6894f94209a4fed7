package clustertest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

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
		sleep(ctx, time.Duration(rng.IntN(5))*time.Millisecond) // hold the lease a moment: the critical section
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
