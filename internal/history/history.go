package history

import (
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// ErrStaleToken is returned by Fence.Write when the fence refuses a write
// because it has seen a greater token for the name.
var ErrStaleToken = errors.New("history: stale fencing token")

// Kind is the kind of a recorded operation.
type Kind uint8

// Operation kinds. Acquire, TryAcquire, Release and Refresh are the Locker
// and Lease calls; Observe is a local look at lease.Err(); Inspect is
// Locker.Inspect; Write is a write to a Fence.
const (
	Acquire Kind = iota + 1
	TryAcquire
	Release
	Refresh
	Observe
	Inspect
	Write
)

var kindNames = map[Kind]string{
	Acquire:    "acquire",
	TryAcquire: "try-acquire",
	Release:    "release",
	Refresh:    "refresh",
	Observe:    "observe",
	Inspect:    "inspect",
	Write:      "write",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) {
	if _, ok := kindNames[k]; !ok {
		return nil, fmt.Errorf("history: invalid kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	for v, s := range kindNames {
		if s == string(b) {
			*k = v
			return nil
		}
	}
	return fmt.Errorf("history: unknown kind %q", b)
}

// grants reports whether k asks the store for a new lease.
func (k Kind) grants() bool { return k == Acquire || k == TryAcquire }

// Outcome is what an operation returned, as far as the checker cares.
type Outcome uint8

// Outcomes. The zero value, Pending, marks an operation that has not returned
// (yet); the checker treats it like Unknown.
const (
	// Pending: invoked, not returned.
	Pending Outcome = iota
	// OK: the call succeeded. Acquire, TryAcquire: granted Op.Token.
	// Release: the store ended the lease. Refresh, Observe: the lease was
	// held. Inspect: the name was held by Op.Token. Write: the fence
	// accepted (committed) the write.
	OK
	// Held: TryAcquire found the name held (lock.ErrHeld).
	Held
	// NotHeld: Release or Refresh returned lock.ErrNotHeld; Observe found
	// lease.Err() non-nil; Inspect found the name free.
	NotHeld
	// Rejected: the fence refused the write (ErrStaleToken).
	Rejected
	// Failed: the call certainly had no effect (invalid name or option; a
	// write whose critical section failed). The checker ignores it.
	Failed
	// Unknown: the call failed in a way that leaves its effect unknown
	// (timeout, no quorum, cancelled, closed): it may or may not have taken
	// effect, at any time after its invocation.
	Unknown
)

var outcomeNames = map[Outcome]string{
	Pending:  "pending",
	OK:       "ok",
	Held:     "held",
	NotHeld:  "not-held",
	Rejected: "rejected",
	Failed:   "failed",
	Unknown:  "unknown",
}

func (o Outcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText implements encoding.TextMarshaler.
func (o Outcome) MarshalText() ([]byte, error) {
	if _, ok := outcomeNames[o]; !ok {
		return nil, fmt.Errorf("history: invalid outcome %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *Outcome) UnmarshalText(b []byte) error {
	for v, s := range outcomeNames {
		if s == string(b) {
			*o = v
			return nil
		}
	}
	return fmt.Errorf("history: unknown outcome %q", b)
}

// Op is one recorded operation. Call and Return are ticks of the Recorder's
// logical clock: every invocation and every return takes the next tick, so
// a.Return < b.Call means a returned before b was invoked.
type Op struct {
	Client int    `json:"client"`
	Kind   Kind   `json:"kind"`
	Name   string `json:"name"`
	// Token is the lease's token for Release, Refresh, Observe and Write;
	// the granted token for a successful Acquire or TryAcquire; the
	// holder's token for an Inspect that found the name held.
	Token   uint64  `json:"token,omitempty"`
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"err,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return"` // 0 while Pending
	// CallAt and ReturnAt are the wall-clock offsets from the Recorder's
	// start (monotonic clock), for humans reading a dump.
	CallAt   time.Duration `json:"call_at"`
	ReturnAt time.Duration `json:"return_at,omitempty"`
}

func (op Op) String() string {
	var b []byte
	b = fmt.Appendf(b, "c%d %s %q", op.Client, op.Kind, op.Name)
	switch op.Kind {
	case Release, Refresh, Observe, Write:
		b = fmt.Appendf(b, " token %d", op.Token)
	}
	b = fmt.Appendf(b, " -> %s", op.Outcome)
	if op.Outcome == OK && (op.Kind.grants() || op.Kind == Inspect) {
		b = fmt.Appendf(b, " token %d", op.Token)
	}
	if op.Err != "" {
		b = fmt.Appendf(b, " (%s)", op.Err)
	}
	if op.Outcome == Pending {
		return string(fmt.Appendf(b, " [%d, -]", op.Call))
	}
	return string(fmt.Appendf(b, " [%d, %d]", op.Call, op.Return))
}

// History is a recorded history. Violations refer to operations by their
// index in it.
type History []Op

// Classify maps the result of a call of the given kind to an Outcome:
// nil is OK (for Inspect, nil with token 0 is NotHeld: the name was free),
// lock.ErrHeld is Held, lock.ErrNotHeld is NotHeld, ErrStaleToken is
// Rejected, lock.ErrInvalidName and lock.ErrInvalidOption are Failed. For
// Observe every non-nil error (lease.Err()) is NotHeld; for Write every other
// error is Failed, since a write the fence did not commit had no effect.
// Every other error is Unknown.
func Classify(kind Kind, token uint64, err error) Outcome {
	switch {
	case err == nil && kind == Inspect && token == 0:
		return NotHeld
	case err == nil:
		return OK
	case kind == Observe:
		return NotHeld
	case kind == Write && errors.Is(err, ErrStaleToken):
		return Rejected
	case kind == Write:
		return Failed
	case errors.Is(err, lock.ErrInvalidName), errors.Is(err, lock.ErrInvalidOption):
		return Failed
	case kind.grants() && errors.Is(err, lock.ErrHeld):
		return Held
	case (kind == Release || kind == Refresh) && errors.Is(err, lock.ErrNotHeld):
		return NotHeld
	}
	return Unknown
}
