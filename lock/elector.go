package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Beyond the mutex (DESIGN.md, "Beyond the mutex"): the optional
// interfaces of a backend's Locker for leader election, counting
// semaphores and read-write locks. A backend, or a mode of one, that cannot
// offer an interface returns an error wrapping ErrUnsupported from every
// method of it. A name lives as one type at a time (mutex, semaphore,
// read-write lock, election): a call of another type, or a permit call
// with another limit, fails with an error wrapping ErrInvalidOption that
// names both; Observe alone reports such a name's seat as empty until it
// is an election.

// Elector runs leader elections.
type Elector interface {
	// Campaign blocks until this call is elected (candidates are served
	// first come, first served), ctx ends or an error occurs. value (at
	// most MaxOwnerLen bytes of UTF-8) is what Leader and Observe show.
	// The options are Acquire's: a term is a session or a TTL lease.
	Campaign(ctx context.Context, election, value string, opts ...Option) (Term, error)

	// Leader is the current leader, or an error wrapping ErrNoLeader when
	// the seat is empty. It is linearizable as Inspect is.
	Leader(ctx context.Context, election string) (LeaderInfo, error)

	// Observe delivers the election's current state, then every later
	// change in the store's order, until ctx ends or the Locker closes;
	// the channel is then closed. A reader that falls behind the
	// backend's buffer gets the latest state with Skipped set, never a
	// stale one. The error is for what fails before any delivery: a bad
	// name, ErrUnsupported, ErrClosed.
	Observe(ctx context.Context, election string) (<-chan LeaderInfo, error)
}

// Term is a leadership won by Campaign. It is a Lease: Release resigns,
// and Done closes when the term ends, before the store elects anyone else
// (I3); the Done of a resigning term closes before the release is sent.
type Term interface {
	Lease

	// Proclaim changes the value Leader and Observe show for this term,
	// without a new election or token. It returns an error wrapping
	// ErrNotHeld once the term has ended, as Refresh does.
	Proclaim(ctx context.Context, value string) error
}

// LeaderInfo is the state of an election.
type LeaderInfo struct {
	Election string
	// Token is the current term's token; 0 when the seat is empty.
	Token uint64
	// Value is the current term's value (Campaign or its last Proclaim).
	Value string
	// Holder is an opaque, stable ID of the session or client holding the
	// term, as Info.Holder.
	Holder string
	// Since is the age of the term, by the store's clock.
	Since time.Duration
	// Skipped counts the states this one replaced before the observer read
	// them (Observe only; 0 when the observer kept up).
	Skipped int
}

// Elected reports whether the seat is taken.
func (i LeaderInfo) Elected() bool { return i.Token != 0 }

// ErrNoLeader: Leader found the election's seat empty.
var ErrNoLeader = errors.New("quorumlock: no leader")

// ValidateValue reports whether value may be a term's value: at most
// MaxOwnerLen bytes of valid UTF-8, the rules of an owner. The error wraps
// ErrInvalidOption.
func ValidateValue(value string) error {
	switch {
	case len(value) > MaxOwnerLen:
		return fmt.Errorf("%w: value is %d bytes, limit %d", ErrInvalidOption, len(value), MaxOwnerLen)
	case !utf8.ValidString(value):
		return fmt.Errorf("%w: value is not valid UTF-8", ErrInvalidOption)
	}
	return nil
}
