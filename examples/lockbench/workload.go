package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// workload is a number of workers looping acquire+release, each on its own
// name or all on one shared name.
type workload struct {
	name    string
	workers int
	shared  bool
}

var workloads = map[string]workload{
	"W1": {name: "W1", workers: 1},
	"W2": {name: "W2", workers: 16},
	"W3": {name: "W3", workers: 16, shared: true},
}

// Bounds of a cell beyond its measured time.
const (
	// opGrace bounds the op in flight when the cell ends (an Acquire queued
	// behind 15 others in W3 included); only a store that stopped answering
	// reaches it.
	opGrace = 30 * time.Second
	// errorPause spaces a worker's attempts after an error, so that a store
	// that refuses every call is not spun on.
	errorPause = 10 * time.Millisecond
)

// window is the time frame of a cell: workers start at once and start
// ops until end. Ops started before from (the warm-up) are not measured;
// those started by end are, to their completion, and the measured span
// runs from from to the last completion (at least to end): so every worker
// that starts an op in the window contributes it, however loaded the
// machine.
type window struct {
	from, end time.Time
}

func (w window) measured(start time.Time) bool { return !start.Before(w.from) }

// span is the measured time, given the last measured completion.
func (w window) span(last time.Time) time.Duration {
	if last.Before(w.end) {
		last = w.end
	}
	return last.Sub(w.from)
}

// runCell runs w on Lockers from b for warmup+duration and measures it.
// idle, when set, is recorded in the cell (the scale probe).
func runCell(ctx context.Context, b backend, backendName string, w workload, cfg config, prog *progress) (cell, error) {
	label := backendName + " " + w.name
	lockers := make([]lock.Locker, 0, w.workers)
	defer func() {
		for _, l := range lockers {
			_ = l.Close()
		}
	}()
	for i := range w.workers {
		l, err := b.newLocker(ctx, i)
		if err != nil {
			return cell{}, fmt.Errorf("%s: worker %d's Locker: %w", label, i, err)
		}
		lockers = append(lockers, l)
	}
	guards := make([]atomic.Int32, w.workers) // holders per name, seen here
	start := time.Now()
	win := window{from: start.Add(cfg.warmup), end: start.Add(cfg.warmup + cfg.duration)}
	opCtx, cancel := context.WithDeadline(ctx, win.end.Add(opGrace))
	defer cancel()
	stop := prog.start(label, cfg.warmup+cfg.duration)
	tallies := make([]tally, w.workers)
	var wg sync.WaitGroup
	for i, l := range lockers {
		name, guard := fmt.Sprintf("lockbench/%s/%d", w.name, i), &guards[i]
		if w.shared {
			name, guard = "lockbench/"+w.name+"/shared", &guards[0]
		}
		wg.Go(func() { worker(opCtx, l, name, guard, win, &tallies[i]) })
	}
	wg.Wait()
	stop()
	var all tally
	for i := range tallies {
		all.merge(&tallies[i])
	}
	return newCell(backendName, w, win.span(all.last), &all), ctx.Err()
}

// worker loops acquire+release on name until win ends, at least once
// (a worker scheduled late on a loaded machine still measures one op).
// guard counts the holders of name in this process: more than one inside
// the critical section is a mutual-exclusion violation.
func worker(ctx context.Context, l lock.Locker, name string, guard *atomic.Int32, win window, t *tally) {
	for first := true; ctx.Err() == nil && (first || time.Now().Before(win.end)); first = false {
		begin := time.Now()
		lease, err := l.Acquire(ctx, name)
		if err != nil {
			t.fail(err)
			if errors.Is(err, lock.ErrClosed) || leasecore.Sleep(ctx, errorPause) != nil {
				return
			}
			continue
		}
		granted := time.Now()
		if !exclusive(guard) {
			t.violations++
		}
		if err := lease.Release(ctx); err != nil {
			t.fail(err)
			continue
		}
		done := time.Now()
		if win.measured(begin) {
			t.ops++
			t.last = done
			t.latency = append(t.latency, done.Sub(begin))
			t.wait = append(t.wait, granted.Sub(begin))
		}
	}
}

// exclusive is the critical section: it enters guard (the holders of a
// name in this process) and leaves it, and reports whether it was alone.
func exclusive(guard *atomic.Int32) bool {
	alone := guard.Add(1) == 1
	guard.Add(-1)
	return alone
}

func newCell(backendName string, w workload, d time.Duration, t *tally) cell {
	c := cell{
		Backend: backendName, Workload: w.name, Workers: w.workers, Seconds: d.Seconds(),
		Ops: t.ops, OpsPerSec: float64(t.ops) / d.Seconds(),
		Latency: summarize(t.latency), Wait: summarize(t.wait),
		Errors: t.errors, Violations: t.violations,
	}
	if t.firstErr != nil {
		c.FirstError = t.firstErr.Error()
	}
	return c
}
