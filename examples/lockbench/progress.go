package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progressEvery is how often the progress line is redrawn.
const progressEvery = 250 * time.Millisecond

// progress draws one line on w (stderr) while a step runs: its name and
// the time elapsed, or a count.
type progress struct {
	w io.Writer
	n atomic.Int64 // for count steps
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

// start draws "label elapsed/total" (total 0: elapsed only) until the
// returned stop is called; stop ends the line.
func (p *progress) start(label string, total time.Duration) (stop func()) {
	begin := time.Now()
	return p.run(func() string {
		el := time.Since(begin).Truncate(100 * time.Millisecond)
		if total > 0 {
			return fmt.Sprintf("%s  %v / %v", label, el, total)
		}
		return fmt.Sprintf("%s  %v", label, el)
	})
}

// count draws "label k/n" as add is called, until stop.
func (p *progress) count(label string, n int) (stop func()) {
	p.n.Store(0)
	return p.run(func() string { return fmt.Sprintf("%s  %d/%d", label, p.n.Load(), n) })
}

func (p *progress) add(k int64) { p.n.Add(k) }

// run redraws line() every progressEvery in a goroutine that stop ends
// (and waits for), with a last draw and a newline.
func (p *progress) run(line func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	draw := func() { _, _ = fmt.Fprintf(p.w, "\r%-60s", line()) } // best effort: a progress line
	wg.Go(func() {
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		for {
			draw()
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		draw()
		_, _ = fmt.Fprintln(p.w)
	}
}
