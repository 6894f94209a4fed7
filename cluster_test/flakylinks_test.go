package clustertest

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestFlakyLinks: sixteen workers on three nodes contend for two names while
// a seeded nemesis, every 1-2 s, makes one node's links slow (5-100 ms per
// write), lossy (each write resets its connection with probability
// 2-20 %) or both, for 1-2 s, then calms them. Checks: the history, no
// fenced write rejected (nobody is paused), and liveness once calm.
func TestFlakyLinks(t *testing.T) {
	t.Parallel()
	s := startScenario(t, 3, 16, []string{"a", "b"}, nil)
	rng, c := s.rng, s.c

	faults := 0
	s.paced(t, time.Second, time.Second, func() {
		i := rng.IntN(c.Size())
		var what []string
		switch rng.IntN(3) {
		case 0:
			d := time.Duration(5+rng.IntN(95)) * time.Millisecond
			c.net.delayLinks(i, d)
			what = append(what, "delay "+d.String())
		case 1:
			p := 0.02 + 0.18*rng.Float64()
			c.net.dropLinks(i, p)
			what = append(what, "drop "+formatP(p))
		default:
			d := time.Duration(5+rng.IntN(45)) * time.Millisecond
			p := 0.02 + 0.08*rng.Float64()
			c.net.delayLinks(i, d)
			c.net.dropLinks(i, p)
			what = append(what, "delay "+d.String(), "drop "+formatP(p))
		}
		faults++
		hold := time.Duration(1000+rng.IntN(1000)) * time.Millisecond
		t.Logf("n%d: %v for %v", i+1, what, hold)
		sleep(t.Context(), hold) // the fault lasts
		c.net.calm()
	})
	s.finish(t, "the links calmed", fmt.Sprintf("faults %d", faults))
}

func formatP(p float64) string { return strconv.FormatFloat(100*p, 'f', 1, 64) + "%" }
