package clustertest

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

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
// nemesis kills the leader every 1-3 s and restarts it. Every call and
// fenced write is recorded and the history checked (history.Require:
// linearizability per name, tokens, fence); fenced writes must never be
// rejected (no process pauses here), and once the nemesis stops every
// worker must acquire again within 10 s.
func TestLeaderKill(t *testing.T) {
	seed := nemesisSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	c := newCluster(t, 3)

	const workers = 6
	names := []string{"a", "b"}
	wl := newWorkload(c)
	lv := newLiveness(workers)

	// kill -> next successful acquire called after the kill, by anyone.
	var kmu sync.Mutex
	var killedAt time.Time
	var recoveries []time.Duration
	wl.acquired = func(w int, started time.Time) {
		now := time.Now()
		kmu.Lock()
		// Only an Acquire called after the kill counts.
		if !killedAt.IsZero() && started.After(killedAt) {
			recoveries = append(recoveries, now.Sub(killedAt))
			killedAt = time.Time{}
		}
		kmu.Unlock()
		lv.acquired(w, started)
	}

	stop := wl.start(workers, names, seed)
	defer stop()

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
	lv.arm()
	last := lv.wait(t, 10*time.Second, "the nemesis stopped")
	stop()

	kmu.Lock()
	rec := slices.Clone(recoveries)
	kmu.Unlock()
	slices.Sort(rec)
	if len(rec) > 0 {
		t.Logf("kill -> next acquire: %v (median %v over %d kills)", rec, rec[len(rec)/2], len(rec))
	}
	t.Logf("kills %d, every worker acquired %v after the nemesis stopped, fenced writes accepted %d rejected %d",
		kills, last.Round(time.Millisecond), wl.accepted.Load(), wl.rejected.Load())
	assert.Zero(t, wl.rejected.Load(), "fenced writes rejected (I2/I3)")
	assert.NotZero(t, wl.accepted.Load())
	requireHistory(t, wl.rec)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
