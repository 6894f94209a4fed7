// Package metrics is the measurement hook of every quorumlock backend: a
// Sink in the backend's Config (Metrics; nil means none) receives what
// happens to this process's leases and, on the Raft backend, to its node.
// The package registers nothing anywhere; prommetrics implements Sink on
// Prometheus. DESIGN.md lists every measurement and who reports it.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Sink receives measurements. Implementations must be safe for concurrent
// use and must not block: backends call them on their hot paths. One Sink
// serves one backend instance (one Node, one Locker of an adapter); give
// each instance its own (prommetrics: with its own constant labels).
type Sink interface {
	// Acquire reports one Acquire (try false) or TryAcquire (try true)
	// call made through this instance: how it ended and how long it took.
	Acquire(try bool, outcome Outcome, latency time.Duration)
	// Granted reports a lease granted to this instance and how long its
	// Acquire waited in the queue (0 if granted at once).
	Granted(kind lock.Kind, waited time.Duration)
	// Ended reports a lease of this instance that ended, why, and how long
	// it was held.
	Ended(kind lock.Kind, reason Reason, held time.Duration)
	// Waiting, Holding and Sessions change this instance's gauges by
	// delta: queued Acquire calls, leases held, sessions open.
	Waiting(delta int)
	Holding(delta int)
	Sessions(delta int)

	// The Raft backend only.

	// Proposed reports a command this node proposed as leader, from
	// raft.Apply to its result (commit and apply).
	Proposed(outcome Outcome, latency time.Duration)
	// Applied reports the time the state machine took to apply one entry.
	Applied(latency time.Duration)
	// Forwarded reports a request this node sent to the leader.
	Forwarded(outcome Outcome, latency time.Duration)
	// LeaderChanged reports that this node became leader (true) or stopped
	// being leader (false).
	LeaderChanged(leader bool)
	// SnapshotInstalled reports a snapshot installed from the leader.
	SnapshotInstalled()
	// Observe hands the Sink a function that reads the node's current
	// values (Stats); the Sink calls it when it is read (a scrape). The
	// function is fast and safe for concurrent use. A later call replaces
	// the function; nil removes it.
	Observe(read func() Stats)
}

// Stats are the values a Raft node reports when read (Sink.Observe).
type Stats struct {
	Term         uint64
	Leader       bool
	CommitIndex  uint64
	AppliedIndex uint64
	// The store, as this node has applied it.
	StoreSessions int
	StoreLocks    int // names held or waited for
	// The node's transport (transport.Stats).
	Dials        uint64
	DialFailures uint64
	ConnsLost    uint64
	PendingCalls int64
	ActiveConns  int64
	AuthFailures uint64
	IOTimeouts   uint64
}

// Outcome says how a call ended.
type Outcome string

// Outcomes.
const (
	OutcomeOK       Outcome = "ok"        // granted, done
	OutcomeHeld     Outcome = "held"      // TryAcquire found the name held
	OutcomeNotHeld  Outcome = "not_held"  // the lease or token no longer exists
	OutcomeCanceled Outcome = "canceled"  // ctx ended while the store was reachable
	OutcomeNoQuorum Outcome = "no_quorum" // the store was unreachable
	OutcomeClosed   Outcome = "closed"    // the Locker or node is closed
	OutcomeInvalid  Outcome = "invalid"   // bad name or option
	OutcomeLimit    Outcome = "limit"     // a store limit refused it
	OutcomeError    Outcome = "error"     // anything else
)

// OutcomeOf maps a call's error to its Outcome.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, lock.ErrNoQuorum):
		return OutcomeNoQuorum
	case errors.Is(err, lock.ErrHeld):
		return OutcomeHeld
	case errors.Is(err, lock.ErrNotHeld):
		return OutcomeNotHeld
	case errors.Is(err, lock.ErrClosed):
		return OutcomeClosed
	case errors.Is(err, lock.ErrInvalidName), errors.Is(err, lock.ErrInvalidOption):
		return OutcomeInvalid
	case errors.Is(err, lock.ErrLimit):
		return OutcomeLimit
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// Reason says why a lease ended.
type Reason string

// Reasons.
const (
	ReasonReleased Reason = "released" // Release, or the Locker's Close
	ReasonExpired  Reason = "expired"  // a TTL lease's TTL passed
	ReasonRevoked  Reason = "revoked"  // Revoke
	ReasonAdopted  Reason = "adopted"  // another Locker adopted it
	ReasonLost     Reason = "lost"     // its session ended, or any other loss
)

// ReasonOf maps a lease's Err to its Reason.
func ReasonOf(err error) Reason {
	switch {
	case errors.Is(err, lock.ErrReleased):
		return ReasonReleased
	case errors.Is(err, lock.ErrExpired):
		return ReasonExpired
	case errors.Is(err, lock.ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, lock.ErrAdopted):
		return ReasonAdopted
	}
	return ReasonLost
}

// Nop is a Sink that discards everything; embed it to implement a part.
type Nop struct{}

func (Nop) Acquire(bool, Outcome, time.Duration)   {}
func (Nop) Granted(lock.Kind, time.Duration)       {}
func (Nop) Ended(lock.Kind, Reason, time.Duration) {}
func (Nop) Waiting(int)                            {}
func (Nop) Holding(int)                            {}
func (Nop) Sessions(int)                           {}
func (Nop) Proposed(Outcome, time.Duration)        {}
func (Nop) Applied(time.Duration)                  {}
func (Nop) Forwarded(Outcome, time.Duration)       {}
func (Nop) LeaderChanged(bool)                     {}
func (Nop) SnapshotInstalled()                     {}
func (Nop) Observe(func() Stats)                   {}

// OrNop returns s, or Nop if s is nil: what a backend does with its
// Config's Metrics.
func OrNop(s Sink) Sink {
	if s == nil {
		return Nop{}
	}
	return s
}
