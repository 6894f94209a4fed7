package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/node/lock"
)

// fence is the resource the locks protect: per name, it accepts a write
// only if its token is at least the highest accepted so far.
type fence struct {
	mu       sync.Mutex
	highest  map[string]uint64
	accepted atomic.Int64
	rejected atomic.Int64
}

func (f *fence) write(name string, token uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.highest[name] {
		f.rejected.Add(1)
		return false
	}
	f.highest[name] = token
	f.accepted.Add(1)
	return true
}

// grants checks I2 over every grant the workers see: a grant recorded
// while its lease is still held must carry a token above every token
// recorded before (an earlier grant whose holder returns late may have
// ended already: it only must not repeat a token).
type grants struct {
	mu         sync.Mutex
	max        map[string]uint64
	seen       map[string]map[uint64]bool
	violations []string
}

func (g *grants) record(l lock.Lease) {
	g.mu.Lock()
	defer g.mu.Unlock()
	name, tok := l.Name(), l.Token()
	if g.seen[name] == nil {
		g.seen[name] = map[uint64]bool{}
	}
	if g.seen[name][tok] {
		g.violations = append(g.violations, fmt.Sprintf("%s: token %d granted twice", name, tok))
	}
	g.seen[name][tok] = true
	if l.Err() == nil && tok <= g.max[name] {
		g.violations = append(g.violations, fmt.Sprintf("%s: live grant %d not above %d", name, tok, g.max[name]))
	}
	g.max[name] = max(g.max[name], tok)
}

// soak is how long the nemesis runs: QUORUMLOCK_SOAK (a duration), else 8 s.
func soak(t *testing.T) time.Duration {
	if s := os.Getenv("QUORUMLOCK_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("QUORUMLOCK_SOAK: %v", err)
		}
		return d
	}
	return 8 * time.Second
}

// TestLeaderKill: six workers on three nodes contend for two names while a
// nemesis kills the leader every 1-3 s and restarts it. Fenced writes must
// never be rejected (no process pauses here), tokens must increase, and
// once the nemesis stops every worker must acquire again within 10 s.
func TestLeaderKill(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	c := newCluster(t, 3)

	const workers = 6
	names := []string{"a", "b"}
	fn := &fence{highest: map[string]uint64{}}
	gs := &grants{max: map[string]uint64{}, seen: map[string]map[uint64]bool{}}

	// kill -> next successful acquire called after the kill, by anyone.
	var kmu sync.Mutex
	var killedAt time.Time
	var recoveries []time.Duration
	var liveSince atomic.Pointer[time.Time] // set when the nemesis stopped
	var live [workers]atomic.Bool
	liveDone := make(chan int, workers)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			worker(ctx, c, w%c.size(), names[w%len(names)], rand.New(rand.NewPCG(uint64(seed), uint64(w+1))), fn, gs, func(started time.Time) {
				now := time.Now()
				kmu.Lock()
				// Only an Acquire called after the kill counts.
				if !killedAt.IsZero() && started.After(killedAt) {
					recoveries = append(recoveries, now.Sub(killedAt))
					killedAt = time.Time{}
				}
				kmu.Unlock()
				if s := liveSince.Load(); s != nil && now.After(*s) && live[w].CompareAndSwap(false, true) {
					liveDone <- w
				}
			})
		})
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	// The nemesis runs on the test goroutine (kill and restart may Fatal).
	end := time.Now().Add(soak(t))
	kills := 0
	for time.Now().Before(end) {
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		li := c.leader()
		kmu.Lock()
		killedAt = time.Now()
		kmu.Unlock()
		c.kill(li)
		kills++
		t.Logf("killed leader n%d", li+1)
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		start := time.Now()
		c.restart(li)
		t.Logf("restarted n%d (waited %v)", li+1, time.Since(start).Round(time.Millisecond))
	}
	now := time.Now()
	liveSince.Store(&now)

	deadline := time.After(10 * time.Second)
	for n := 0; n < workers; n++ {
		select {
		case <-liveDone:
		case <-deadline:
			var stuck []int
			for w := range workers {
				if !live[w].Load() {
					stuck = append(stuck, w)
				}
			}
			t.Errorf("liveness: workers %v acquired nothing within 10 s after the nemesis stopped", stuck)
			n = workers
		}
	}
	stop()
	wg.Wait()

	kmu.Lock()
	rec := slices.Clone(recoveries)
	kmu.Unlock()
	slices.Sort(rec)
	if len(rec) > 0 {
		t.Logf("kill -> next acquire: %v (median %v over %d kills)", rec, rec[len(rec)/2], len(rec))
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	t.Logf("kills %d, fenced writes accepted %d rejected %d, grants %d+%d",
		kills, fn.accepted.Load(), fn.rejected.Load(), len(gs.seen["a"]), len(gs.seen["b"]))
	assert.Zero(t, fn.rejected.Load(), "fenced writes rejected (I2/I3)")
	assert.Empty(t, gs.violations, "I2")
	assert.NotZero(t, fn.accepted.Load())
}

// worker loops acquire (3 s timeout) -> fenced write -> hold briefly ->
// fenced write -> release on node i, with a fresh Locker whenever its node
// was killed and restarted.
func worker(ctx context.Context, c *cluster, i int, name string, rng *rand.Rand, fn *fence, gs *grants, acquired func(started time.Time)) {
	for ctx.Err() == nil {
		nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		l, err := c.newLocker(nctx, i)
		cancel()
		if err != nil {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		for ctx.Err() == nil {
			started := time.Now()
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			lease, err := l.Acquire(actx, name)
			cancel()
			if errors.Is(err, lock.ErrClosed) {
				break
			}
			if err != nil {
				sleep(ctx, 10*time.Millisecond)
				continue
			}
			acquired(started)
			gs.record(lease)
			if lease.Err() == nil {
				fn.write(name, lease.Token())
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				if lease.Err() == nil {
					fn.write(name, lease.Token())
				}
			}
			rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = lease.Release(rctx)
			cancel()
		}
		_ = l.Close()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
