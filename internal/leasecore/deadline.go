package leasecore

import (
	"sync"
	"time"
)

// Deadline is a holder's local deadline (I3): the send time of the last
// acknowledged grant, renewal or Refresh, plus the TTL, minus a drift
// margin. When it passes, fire runs (on its own goroutine) unless the
// deadline was extended or stopped first. It only ever moves later.
// Deadline is safe for concurrent use.
type Deadline struct {
	mu      sync.Mutex
	at      time.Time
	timer   *time.Timer
	stopped bool
}

// Start arms d to call fire at at. It may be called once. A Deadline never
// started (a lease without one) is inert: Extend reports false, At is the
// zero time and Stop does nothing.
func (d *Deadline) Start(at time.Time, fire func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = at
	d.timer = time.AfterFunc(time.Until(at), func() {
		if d.due() {
			fire()
		}
	})
}

// due runs when the timer fires: true if the deadline has really passed;
// if it was extended meanwhile, the timer is re-armed instead.
func (d *Deadline) due() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	if left := time.Until(d.at); left > 0 {
		d.timer.Reset(left)
		return false
	}
	d.stopped = true
	return true
}

// Extend moves the deadline to at if that is later than the current one
// and the deadline has neither passed nor been stopped. It reports whether
// the deadline is still ahead (false: the lease must be treated as over,
// whatever the answer that brought at).
func (d *Deadline) Extend(at time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || !time.Now().Before(d.at) {
		return false
	}
	if at.After(d.at) {
		d.at = at
		d.timer.Reset(time.Until(at))
	}
	return true
}

// At returns the current deadline.
func (d *Deadline) At() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at
}

// Stop disarms the deadline; fire will not run after Stop returns unless it
// had already begun.
func (d *Deadline) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
}
