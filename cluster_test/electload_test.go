package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// electionName is the one election the election scenario runs.
const electionName = "leader"

// electTTL is the TTL of the odd candidates' terms.
const electTTL = time.Second

// electLoad is the recorded client side of the election scenario
// (README.md, "Elections"): candidates campaigning, holding a term a
// moment, proclaiming once and resigning, over and over; and one observer
// per node recording its Observe streams. Everything goes into rec.
type electLoad struct {
	c   *cluster
	rec *history.ElectionRecorder

	elected atomic.Int64   // terms won
	holding []atomic.Int32 // per node: candidates holding a term now
	// cut marks the nodes the nemesis has cut off: a holder there works on
	// past its hold, as a leader that does not know it is cut off would,
	// until its term ends (or the cut heals).
	cut       []atomic.Bool
	mu        sync.Mutex
	latest    []lock.LeaderInfo // per observer (node): the last state received
	streaming []bool            // per observer: a stream is open
}

func newElectLoad(c *cluster) *electLoad {
	return &electLoad{
		c:         c,
		rec:       history.NewElectionRecorder(),
		holding:   make([]atomic.Int32, c.Size()),
		cut:       make([]atomic.Bool, c.Size()),
		latest:    make([]lock.LeaderInfo, c.Size()),
		streaming: make([]bool, c.Size()),
	}
}

// holderNode waits up to d for a node where a candidate holds a term and
// returns it, -1 if there was none (the seat may be held by a killed
// node's session meanwhile).
func (el *electLoad) holderNode(d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		for i := range el.holding {
			if el.holding[i].Load() > 0 {
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
func (el *electLoad) setCut(i int, on bool) { el.cut[i].Store(on) }

// start runs candidates candidates (candidate k on node k%size, with a
// TTL term if k is odd) and one observer per node; the returned funcs
// stop them and wait (idempotent), the candidates first.
func (el *electLoad) start(candidates int, seed int64) (stopCandidates, stopObservers func()) {
	return el.run(candidates, func(ctx context.Context, k int) {
		el.candidate(ctx, k, k%el.c.Size(), rand.New(rand.NewPCG(uint64(seed), uint64(k+100))))
	}), el.run(el.c.Size(), el.observer)
}

// run runs f(ctx, k) for k < n until the returned func cancels ctx and
// waits for them.
func (el *electLoad) run(n int, f func(ctx context.Context, k int)) func() { return runAll(n, f) }

// runAll runs f(ctx, k) for k < n until the returned func cancels ctx and
// waits for them (idempotent).
func runAll(n int, f func(ctx context.Context, k int)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range n {
		wg.Go(func() { f(ctx, k) })
	}
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
}

// locker returns a new Locker of node i, retrying every 50 ms while the
// node is dead or starting, until ctx ends.
func (el *electLoad) locker(ctx context.Context, i int) (lock.Locker, bool) {
	return el.c.lockerOf(ctx, i)
}

// lockerOf returns a new Locker of node i, retrying every 50 ms while the
// node is dead or starting, until ctx ends.
func (c *cluster) lockerOf(ctx context.Context, i int) (lock.Locker, bool) {
	for ctx.Err() == nil {
		nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		l, err := c.NewLocker(nctx, i)
		cancel()
		if err == nil {
			return l, true
		}
		sleep(ctx, 50*time.Millisecond) // retry pace while the node is down
	}
	return nil, false
}

// candidate k campaigns on node i until ctx ends, with a fresh Locker
// whenever its node was killed and restarted (ErrClosed).
func (el *electLoad) candidate(ctx context.Context, k, i int, rng *rand.Rand) {
	var opts []lock.Option
	if k%2 == 1 {
		opts = append(opts, lock.WithTTL(electTTL))
	}
	n := 0
	for {
		l, ok := el.locker(ctx, i)
		if !ok {
			return
		}
		for ctx.Err() == nil {
			n++
			if el.term(ctx, k, i, l.(lock.Elector), fmt.Sprintf("c%d-%d", k, n), rng, opts) {
				break
			}
		}
		_ = l.Close()
	}
}

// term is one Campaign of candidate k on node i and, if it wins, the term:
// held 20-100 ms while the candidate looks at it every 5 ms, proclaimed
// once halfway, resigned. It reports whether the Locker is closed.
func (el *electLoad) term(ctx context.Context, k, i int, e lock.Elector, value string, rng *rand.Rand, opts []lock.Option) (closed bool) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	held, err := el.rec.Campaign(cctx, k, e, electionName, value, opts...)
	cancel()
	if errors.Is(err, lock.ErrClosed) {
		return true
	}
	if err != nil {
		sleep(ctx, 10*time.Millisecond) // retry pace
		return false
	}
	el.elected.Add(1)
	el.holding[i].Add(1)
	defer el.holding[i].Add(-1)
	hold := time.Duration(20+rng.IntN(80)) * time.Millisecond
	el.hold(ctx, i, held, value, hold)
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = held.Resign(rctx)
	return false
}

// hold keeps the term on node i for d (the leader's "work"), looking at
// it every 5 ms (the sharper the looks, the sharper the two-leaders
// check) and proclaiming value+"/p" at d/2; past d it goes on while node i
// is cut off. It stops early when the term ends or ctx does.
func (el *electLoad) hold(ctx context.Context, i int, held *history.HeldTerm, value string, d time.Duration) {
	end := time.NewTimer(d)
	defer end.Stop()
	half := time.NewTimer(d / 2)
	defer half.Stop()
	look := time.NewTicker(5 * time.Millisecond)
	defer look.Stop()
	over := false
	for held.Look() && (!over || el.cut[i].Load()) {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			over = true
		case <-held.Term().Done():
		case <-look.C:
		case <-half.C:
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = held.Proclaim(pctx, value+"/p")
			cancel()
		}
	}
}

// observer o watches the election from node o until ctx ends: each
// Observe stream on a fresh Locker, recorded state by state; a new stream
// when one ends (its node killed, its Locker closed).
func (el *electLoad) observer(ctx context.Context, o int) {
	for stream := 1; ; stream++ {
		l, ok := el.locker(ctx, o)
		if !ok {
			return
		}
		el.stream(ctx, o, stream, l.(lock.Elector))
		_ = l.Close()
	}
}

// stream records one Observe stream of observer o until it closes.
func (el *electLoad) stream(ctx context.Context, o, stream int, e lock.Elector) {
	for ctx.Err() == nil {
		states, err := e.Observe(ctx, electionName)
		if errors.Is(err, lock.ErrClosed) {
			return
		}
		if err != nil { // no quorum yet
			sleep(ctx, 50*time.Millisecond) // retry pace
			continue
		}
		el.setStreaming(o, true)
		defer el.setStreaming(o, false)
		for info := range states {
			el.rec.Sight(o, stream, info)
			el.mu.Lock()
			el.latest[o] = info
			el.mu.Unlock()
		}
		return
	}
}

func (el *electLoad) setStreaming(o int, on bool) {
	el.mu.Lock()
	defer el.mu.Unlock()
	el.streaming[o] = on
}

// observed reports, per observer, whether a stream is open and the last
// state it received.
func (el *electLoad) observed() ([]bool, []lock.LeaderInfo) {
	el.mu.Lock()
	defer el.mu.Unlock()
	return append([]bool(nil), el.streaming...), append([]lock.LeaderInfo(nil), el.latest...)
}
