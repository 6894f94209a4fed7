package main

import (
	"slices"
	"time"
)

// dist summarizes a set of durations, in milliseconds.
type dist struct {
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// summarize sorts samples in place and returns their percentiles (nearest
// rank). No samples: all zero.
func summarize(samples []time.Duration) dist {
	if len(samples) == 0 {
		return dist{}
	}
	slices.Sort(samples)
	return dist{
		P50:  ms(percentile(samples, 50)),
		P99:  ms(percentile(samples, 99)),
		P999: ms(percentile(samples, 99.9)),
		Max:  ms(samples[len(samples)-1]),
	}
}

// percentile is the nearest-rank percentile p of sorted, non-empty s.
func percentile(s []time.Duration, p float64) time.Duration {
	rank := int(p/100*float64(len(s)) + 0.999999)
	return s[min(max(rank, 1), len(s))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// tally is one worker's measurements; merged after the cell.
type tally struct {
	ops        int
	errors     int
	violations int
	latency    []time.Duration // Acquire call to Release return
	wait       []time.Duration // Acquire call to grant
	firstErr   error
	last       time.Time // the last measured completion
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

func (t *tally) merge(o *tally) {
	t.ops += o.ops
	t.errors += o.errors
	t.violations += o.violations
	t.latency = append(t.latency, o.latency...)
	t.wait = append(t.wait, o.wait...)
	if t.firstErr == nil {
		t.firstErr = o.firstErr
	}
	if o.last.After(t.last) {
		t.last = o.last
	}
}
