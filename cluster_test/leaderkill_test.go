package clustertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/node"
)

// TestLeaderKill: sixteen workers on three, then five nodes contend for
// two names while a nemesis kills the leader every 1-3 s and restarts it.
// Every call and fenced write is recorded and the history checked
// (scenario.finish: linearizability per name, tokens, fence); fenced writes
// must never be rejected (no process pauses here), and once the nemesis
// stops every worker must acquire again within 20 s.
func TestLeaderKill(t *testing.T) {
	t.Parallel()
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%dnodes", size), func(t *testing.T) { testLeaderKill(t, size) })
	}
}

func testLeaderKill(t *testing.T, size int) {
	// kill -> next successful acquire called after the kill, by anyone.
	var kmu sync.Mutex
	var killedAt time.Time
	var recoveries []time.Duration
	s := startScenario(t, size, 16, []string{"a", "b"}, func(w int, started time.Time) {
		now := time.Now()
		kmu.Lock()
		defer kmu.Unlock()
		// Only an Acquire called after the kill counts.
		if !killedAt.IsZero() && started.After(killedAt) {
			recoveries = append(recoveries, now.Sub(killedAt))
			killedAt = time.Time{}
		}
	})
	rng, c := s.rng, s.c

	// kill -> a free name acquired through a survivor (I7's failover).
	var probes sync.WaitGroup
	var free []time.Duration
	probe := func(killed time.Time, n *node.Node, name string) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		l, err := n.Acquire(ctx, name)
		if err != nil {
			t.Logf("probe %s: %v", name, err)
			return
		}
		d := time.Since(killed)
		_ = l.Release(ctx)
		kmu.Lock()
		free = append(free, d)
		kmu.Unlock()
	}

	// The nemesis runs on the test goroutine (kill and restart may Fatal).
	end := time.Now().Add(soak(t))
	kills := 0
	for kills < 2 || time.Now().Before(end) {
		// The nemesis's pace, not a wait for state: load runs between kills.
		sleep(t.Context(), time.Duration(1000+rng.IntN(2000))*time.Millisecond)
		li := c.Leader()
		at := time.Now()
		kmu.Lock()
		killedAt = at
		kmu.Unlock()
		c.Kill(li)
		kills++
		t.Logf("killed leader n%d", li+1)
		if n := c.Node((li + 1) % size); n != nil {
			probes.Go(func() { probe(at, n, fmt.Sprintf("free-%d", kills)) })
		}
		sleep(t.Context(), time.Duration(200+rng.IntN(800))*time.Millisecond) // the node stays dead a while
		start := time.Now()
		c.Restart(li)
		t.Logf("restarted n%d (waited %v)", li+1, time.Since(start).Round(time.Millisecond))
	}
	probes.Wait()
	kmu.Lock()
	rec, fr := slices.Clone(recoveries), slices.Clone(free)
	kmu.Unlock()
	figures(t, fmt.Sprintf("leader_kill_to_free_acquire_%dnodes", size), fr)
	figures(t, fmt.Sprintf("leader_kill_to_next_contended_acquire_%dnodes", size), rec)
	s.finish(t, "the nemesis stopped", fmt.Sprintf("kills %d", kills))
}
