package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// report prints the failover figures, by where the Raft leader was at the
// kill, and the summary line.
func (d *demo) report(kills []failover) error {
	h := d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "failover, session TTL %v: kill → a survivor's observer shows the new term (observed), kill → the new leader's Campaign returns (elected)\n", d.cfg.ttl)
	for _, row := range []struct {
		label string
		keep  func(failover) bool
	}{
		{"every kill", func(failover) bool { return true }},
		{"leader's node was the Raft leader", func(f failover) bool { return f.raftLeader }},
		{"leader's node was a Raft follower", func(f failover) bool { return !f.raftLeader }},
	} {
		var observed, elected []time.Duration
		var raftTerms uint64
		for _, f := range kills {
			if row.keep(f) {
				observed = append(observed, f.observed)
				elected = append(elected, f.elected)
				raftTerms += f.raftElections
			}
		}
		fmt.Fprintf(&b, "  %-34s n=%-3d observed median=%v p99=%v  elected median=%v p99=%v  Raft terms=%d\n", row.label, len(observed),
			percentile(observed, 50), percentile(observed, 99), percentile(elected, 50), percentile(elected, 99), raftTerms)
	}
	var observed []time.Duration
	for _, f := range kills {
		observed = append(observed, f.observed)
	}
	fmt.Fprintf(&b, "SUMMARY replicas=%d ttl=%v kills=%d terms=%d failover_median=%v failover_p99=%v tokens_increasing=%t single_leader=%t\n",
		d.cfg.replicas, d.cfg.ttl, len(kills), len(h.terms), percentile(observed, 50), percentile(observed, 99),
		h.backwards == 0, h.twoLeaders == 0)
	if _, err := fmt.Fprint(h.out, b.String()); err != nil {
		return err
	}
	return h.outErr
}

// percentile is the nearest-rank percentile p of samples, rounded to the
// millisecond; 0 without samples.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(samples))
	rank := int(p/100*float64(len(s)) + 0.999999)
	return round(s[min(max(rank, 1), len(s))-1])
}
