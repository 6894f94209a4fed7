package clustertest

import (
	"fmt"
	"testing"
	"time"
)

// TestRandomPartitions: six workers on three nodes contend for two names
// while a seeded nemesis, every 1-2 s, splits the cluster into a random
// minority and majority for 0.5-2 s and heals it. When some worker holds a
// lease (polled for up to 300 ms), half of the splits isolate
// that holder's node while it holds. Every call and
// fenced write is recorded and the history checked (history.Require). After
// the final heal every worker must acquire within 20 s: hashicorp/raft's
// replication backoff can keep a healed follower behind for up to ~10 s.
// (It found bugs 1 and 2 of README.md, "Bugs these tests found".)
func TestRandomPartitions(t *testing.T) {
	t.Parallel()
	s := startScenario(t, 3, 6, []string{"a", "b"}, nil)
	rng, c := s.rng, s.c

	splits, holderSplits := 0, 0
	s.paced(t, time.Second, time.Second, func() {
		minority, why := rng.IntN(c.Size()), "random"
		if rng.IntN(2) == 0 {
			if h := holderNode(s.wl, 300*time.Millisecond); h >= 0 {
				minority, why = h, "holder's node"
				holderSplits++
			}
		}
		var majority []int
		for i := range c.Size() {
			if i != minority {
				majority = append(majority, i)
			}
		}
		d := time.Duration(500+rng.IntN(1500)) * time.Millisecond
		c.net.partition([]int{minority}, majority)
		splits++
		t.Logf("partition %s | %s (%s) for %v", nodeList([]int{minority}), nodeList(majority), why, d)
		sleep(t.Context(), d) // the split lasts
		c.net.heal()
	})
	c.net.heal()
	s.finish(t, "the final heal", fmt.Sprintf("%d partitions (%d of a holder's node)", splits, holderSplits))
}

// holderNode waits up to d for a node where some worker holds a lease and
// returns it, -1 if there was none (leases are held for a few ms at a time).
func holderNode(wl *workload, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		for i := range wl.c.Size() {
			if wl.holds(i) > 0 {
				return i
			}
		}
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(time.Millisecond) // poll, bounded by the deadline above
	}
}

func nodeList(is []int) string {
	s := ""
	for k, i := range is {
		if k > 0 {
			s += ","
		}
		s += fmt.Sprintf("n%d", i+1)
	}
	return s
}
