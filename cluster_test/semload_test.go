package clustertest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// The semaphore and the read-write lock of the semaphore scenario, and
// the semaphore's limit.
const (
	semName  = "permits"
	rwName   = "rw"
	semLimit = 2
)

// semLoad is the recorded client side of the semaphore scenario
// (README.md, "Semaphores and read-write locks"): workers taking a permit,
// a read lease or a write lease, holding it a moment and releasing it,
// over and over. Everything goes into rec.
type semLoad struct {
	c   *cluster
	rec *history.GrantRecorder

	holding []atomic.Int32 // per node: workers holding a lease now
	// cut marks the nodes the nemesis has cut off: a holder there holds on
	// past its hold until its lease ends (or the cut heals).
	cut []atomic.Bool
}

func newSemLoad(c *cluster) *semLoad {
	return &semLoad{
		c:       c,
		rec:     history.NewGrantRecorder(),
		holding: make([]atomic.Int32, c.Size()),
		cut:     make([]atomic.Bool, c.Size()),
	}
}

// holderNode waits up to d for a node where a worker holds a lease and
// returns it, -1 if there was none.
func (sl *semLoad) holderNode(d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		for i := range sl.holding {
			if sl.holding[i].Load() > 0 {
				return i
			}
		}
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(time.Millisecond) // poll, bounded by the deadline above
	}
}

// setCut marks node i cut off by the nemesis (or no longer).
func (sl *semLoad) setCut(i int, on bool) { sl.cut[i].Store(on) }

// start runs workers workers (worker k on node k%size, in workerMode(k),
// with a TTL lease if k is odd); the returned func stops them and waits
// (idempotent).
func (sl *semLoad) start(workers int, seed int64) func() {
	return runAll(workers, func(ctx context.Context, k int) {
		sl.worker(ctx, k, k%sl.c.Size(), rand.New(rand.NewPCG(uint64(seed), uint64(k+200))))
	})
}

// workerMode is worker k's mode: with 9 workers on 3 nodes, each node has
// a permit taker (k < 3), a reader and a writer (k >= 6).
func workerMode(k int) history.Mode {
	return []history.Mode{history.PermitMode, history.ReadMode, history.WriteMode}[(k/3)%3]
}

// acquire makes one Acquire call of mode through l, recorded by worker.
func (sl *semLoad) acquire(ctx context.Context, worker int, l lock.Locker, mode history.Mode, opts ...lock.Option) (*history.HeldLease, error) {
	switch mode {
	case history.PermitMode:
		return sl.rec.Acquire(ctx, worker, semName, mode, semLimit, func(ctx context.Context) (lock.Lease, error) {
			return l.(lock.Semaphores).AcquirePermit(ctx, semName, semLimit, opts...)
		})
	case history.ReadMode:
		return sl.rec.Acquire(ctx, worker, rwName, mode, 0, func(ctx context.Context) (lock.Lease, error) {
			return l.(lock.RWLockers).AcquireRead(ctx, rwName, opts...)
		})
	default:
		return sl.rec.Acquire(ctx, worker, rwName, mode, 0, func(ctx context.Context) (lock.Lease, error) {
			return l.(lock.RWLockers).AcquireWrite(ctx, rwName, opts...)
		})
	}
}

// worker k acquires on node i until ctx ends, with a fresh Locker
// whenever its node was killed and restarted (ErrClosed).
func (sl *semLoad) worker(ctx context.Context, k, i int, rng *rand.Rand) {
	var opts []lock.Option
	if k%2 == 1 {
		opts = append(opts, lock.WithTTL(electTTL))
	}
	for {
		l, ok := sl.c.lockerOf(ctx, i)
		if !ok {
			return
		}
		for ctx.Err() == nil && !sl.grant(ctx, k, i, l, rng, opts) {
		}
		_ = l.Close()
	}
}

// grant is one Acquire of worker k on node i and, if granted, the lease:
// held 10-50 ms while the worker looks at it every 5 ms, released. It
// reports whether the Locker is closed.
func (sl *semLoad) grant(ctx context.Context, k, i int, l lock.Locker, rng *rand.Rand, opts []lock.Option) (closed bool) {
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	held, err := sl.acquire(actx, k, l, workerMode(k), opts...)
	cancel()
	if errors.Is(err, lock.ErrClosed) {
		return true
	}
	if err != nil {
		sleep(ctx, 10*time.Millisecond) // retry pace
		return false
	}
	sl.holding[i].Add(1)
	defer sl.holding[i].Add(-1)
	sl.hold(ctx, i, held, time.Duration(10+rng.IntN(40))*time.Millisecond)
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = held.Release(rctx)
	return false
}

// hold keeps the lease on node i for d, looking at it every 5 ms (the
// sharper the looks, the sharper the checks); past d it goes on while
// node i is cut off. It stops early when the lease ends or ctx does.
func (sl *semLoad) hold(ctx context.Context, i int, held *history.HeldLease, d time.Duration) {
	end := time.NewTimer(d)
	defer end.Stop()
	look := time.NewTicker(5 * time.Millisecond)
	defer look.Stop()
	over := false
	for held.Look() && (!over || sl.cut[i].Load()) {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			over = true
		case <-held.Lease().Done():
		case <-look.C:
		}
	}
}
