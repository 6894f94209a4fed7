package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Operations (DESIGN.md, "Operating a lock"): the optional interfaces an
// operator uses to list, revoke and adopt locks. Every backend's Locker
// implements all three; a backend or mode that cannot serve one returns an
// error wrapping ErrUnsupported.

// Lister lists held names.
type Lister interface {
	// List returns the held names that start with prefix ("" for all), in
	// pages of at most WithLimit names; pass Page.Next to WithCursor for the
	// next page. Each page is one consistent read; pages are not a snapshot
	// of one moment (DESIGN.md). Info.Queue is empty in a Page.
	List(ctx context.Context, prefix string, opts ...ListOption) (Page, error)
}

// Page is one page of a List.
type Page struct {
	Locks []Info
	// Next is the cursor of the following page; "" when this page is the
	// last.
	Next string
}

// Revoker ends leases from outside.
type Revoker interface {
	// Revoke ends the lease of name whose token is token: the holder's
	// Done closes with ErrRevoked before the name is granted to anyone
	// else, or the store ends it after a grace if the holder does not let
	// go (DESIGN.md). It returns nil once the lease has ended in the
	// store; an error wrapping ErrNotHeld if name is not held with that
	// token; ctx's error if ctx ended first (the revoke then stays in
	// effect and completes on its own).
	Revoke(ctx context.Context, name string, token uint64) error
}

// Adopter takes over TTL leases.
type Adopter interface {
	// Adopt makes this Locker the holder of the TTL lease of name whose
	// token is token, refreshed for a full TTL; the returned Lease has that
	// token and TTL. It returns an error wrapping ErrNotHeld if name is not
	// held by a TTL lease with that token (a session lease cannot be
	// adopted). A previous holder that is still alive sees its Done close
	// with ErrAdopted. Adopt is for a holder that is gone: fencing cannot
	// tell the two holders of one token apart (DESIGN.md).
	Adopt(ctx context.Context, name string, token uint64) (Lease, error)
}

// TokenFloorer raises the fencing tokens of a name: adapters/migrate uses it
// to keep tokens increasing while an application moves between stores
// (DESIGN.md, "Raising tokens").
type TokenFloorer interface {
	// FloorToken makes every grant of name that the store commits after
	// FloorToken returns nil carry a token greater than floor. It does not
	// touch a current lease or queue, and it never lowers anything: a floor
	// at or below what the store would issue anyway changes nothing. floor
	// must be at most MaxTokenFloor (else ErrInvalidOption). A store that
	// cannot raise its tokens that far returns an error wrapping
	// ErrUnsupported, with both numbers in its message; ErrTokensBehind
	// if asking again may succeed. Errors of an unreachable store and of
	// ctx follow R5.
	FloorToken(ctx context.Context, name string, floor uint64) error
}

// MaxTokenFloor bounds FloorToken's floor, so that a raised token can never
// wrap around: 2^62 leaves room for as many more grants as any store will
// ever make.
const MaxTokenFloor = 1 << 62

// ValidateTokenFloor reports whether floor is at most MaxTokenFloor. The
// error wraps ErrInvalidOption.
func ValidateTokenFloor(floor uint64) error {
	if floor > MaxTokenFloor {
		return fmt.Errorf("%w: token floor %d above %d", ErrInvalidOption, floor, uint64(MaxTokenFloor))
	}
	return nil
}

// Kind says how a lease is kept.
type Kind uint8

// Lease kinds.
const (
	KindNone    Kind = iota // not held
	KindSession             // held while its session lives
	KindTTL                 // held until its TTL passes without a Refresh
)

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindSession:
		return "session"
	case KindTTL:
		return "ttl"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Type is what a name is used as: one type at a time while it lives.
type Type uint8

// Lock types.
const (
	TypeNone      Type = iota // free, or the backend does not report types
	TypeMutex                 // Acquire
	TypeSemaphore             // AcquirePermit
	TypeReadWrite             // AcquireRead, AcquireWrite
	TypeElection              // Campaign
)

func (t Type) String() string {
	switch t {
	case TypeNone:
		return "none"
	case TypeMutex:
		return "mutex"
	case TypeSemaphore:
		return "semaphore"
	case TypeReadWrite:
		return "read-write lock"
	case TypeElection:
		return "election"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Mode is a read-write lock's lease or waiter mode.
type Mode uint8

// Modes.
const (
	ModeNone  Mode = iota // not a read-write lock
	ModeRead              // AcquireRead
	ModeWrite             // AcquireWrite
)

func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeRead:
		return "read"
	case ModeWrite:
		return "write"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Holder is one held lease of a name, as Inspect reports it in
// Info.Holders; the fields mean what Info's top-level ones do.
type Holder struct {
	Token     uint64
	Owner     string
	Kind      Kind
	ExpiresIn time.Duration
	Since     time.Duration
	Holder    string
	Node      string
	Mode      Mode   // a read-write lock's lease
	Slot      int    // a semaphore's permit
	Value     string // an election's term
}

// Waiter is one queued Acquire, as Inspect reports it.
type Waiter struct {
	Holder string        // the waiting session or client (see Info.Holder)
	Node   string        // the replica it is attached to, where known
	Owner  string        // its WithOwner value
	Waited time.Duration // time since it queued, on the store's clock
	Mode   Mode          // a read-write lock's waiter
}

// Queue limits of Inspect.
const (
	DefaultQueueLimit = 10
	MaxQueueLimit     = 1000
)

// InspectOption configures one Inspect call.
type InspectOption func(*InspectOptions)

// InspectOptions is the resolved form of a list of InspectOption values.
type InspectOptions struct {
	// QueueLimit bounds Info.Queue; 0 omits it.
	QueueLimit int
}

// WithQueueLimit makes Inspect report at most n waiters in Info.Queue
// (0 to MaxQueueLimit; the default is DefaultQueueLimit).
func WithQueueLimit(n int) InspectOption {
	return func(o *InspectOptions) { o.QueueLimit = n }
}

// NewInspectOptions applies opts to the defaults and validates the result.
// The error wraps ErrInvalidOption.
func NewInspectOptions(opts ...InspectOption) (InspectOptions, error) {
	o := InspectOptions{QueueLimit: DefaultQueueLimit}
	for _, opt := range opts {
		if opt == nil {
			return InspectOptions{}, fmt.Errorf("%w: nil InspectOption", ErrInvalidOption)
		}
		opt(&o)
	}
	if o.QueueLimit < 0 || o.QueueLimit > MaxQueueLimit {
		return InspectOptions{}, fmt.Errorf("%w: queue limit %d outside [0, %d]", ErrInvalidOption, o.QueueLimit, MaxQueueLimit)
	}
	return o, nil
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// MaxCursorLen bounds the cursors a backend accepts.
	MaxCursorLen = 4 << 10
)

// ListOption configures one List call.
type ListOption func(*ListOptions)

// ListOptions is the resolved form of a list of ListOption values.
type ListOptions struct {
	Limit  int    // names per page, 1 to MaxListLimit
	Cursor string // "" for the first page, else a Page.Next
}

// WithLimit makes List return at most n names (1 to MaxListLimit; the
// default is DefaultListLimit).
func WithLimit(n int) ListOption {
	return func(o *ListOptions) { o.Limit = n }
}

// WithCursor makes List return the page after the one whose Next is c.
func WithCursor(c string) ListOption {
	return func(o *ListOptions) { o.Cursor = c }
}

// NewListOptions validates prefix and applies opts to the defaults. A
// non-empty prefix follows the rules of names (ValidateName); the error
// wraps ErrInvalidName for a bad prefix and ErrInvalidOption for a bad
// option. Backends validate the cursor's contents themselves (its form is
// theirs) and report a bad one with ErrInvalidOption.
func NewListOptions(prefix string, opts ...ListOption) (ListOptions, error) {
	if prefix != "" {
		if err := ValidateName(prefix); err != nil {
			return ListOptions{}, fmt.Errorf("prefix: %w", err)
		}
	}
	o := ListOptions{Limit: DefaultListLimit}
	for _, opt := range opts {
		if opt == nil {
			return ListOptions{}, fmt.Errorf("%w: nil ListOption", ErrInvalidOption)
		}
		opt(&o)
	}
	if o.Limit < 1 || o.Limit > MaxListLimit {
		return ListOptions{}, fmt.Errorf("%w: list limit %d outside [1, %d]", ErrInvalidOption, o.Limit, MaxListLimit)
	}
	if len(o.Cursor) > MaxCursorLen {
		return ListOptions{}, fmt.Errorf("%w: cursor is %d bytes, limit %d", ErrInvalidOption, len(o.Cursor), MaxCursorLen)
	}
	return o, nil
}

// ValidateToken reports whether token can name a grant: tokens start at 1
// on every backend. The error wraps ErrNotHeld, since no lease has token 0.
func ValidateToken(token uint64) error {
	if token == 0 {
		return fmt.Errorf("%w: token 0 names no lease", ErrNotHeld)
	}
	return nil
}

// lossError is a sentinel that is also ErrLost, so that code treating every
// loss alike needs no change when a new way of losing a lease appears.
type lossError struct{ msg string }

func (e *lossError) Error() string        { return e.msg }
func (e *lossError) Is(target error) bool { return target == ErrLost }

// unsupportedError is ErrUnsupported; it also satisfies
// errors.Is(err, errors.ErrUnsupported).
type unsupportedError struct{}

func (unsupportedError) Error() string        { return "quorumlock: not supported by this backend" }
func (unsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

var (
	// ErrRevoked: the lease was ended by Revoke. errors.Is(err, ErrLost)
	// holds too.
	ErrRevoked error = &lossError{"quorumlock: lease revoked"}
	// ErrAdopted: another Locker adopted the lease (Adopter). errors.Is(err,
	// ErrLost) holds too.
	ErrAdopted error = &lossError{"quorumlock: lease adopted by another locker"}
	// ErrUnsupported: the backend (or its mode) does not offer the call.
	// errors.Is(err, errors.ErrUnsupported) holds too.
	ErrUnsupported error = unsupportedError{}
	// ErrTokensBehind: FloorToken could not raise the tokens that far now
	// (ZooKeeper: its zxid is still short of the floor after the writes
	// one call makes); asking again may succeed. errors.Is(err,
	// ErrUnsupported) holds too.
	ErrTokensBehind error = behindError{}
)

// behindError is ErrTokensBehind; it is also ErrUnsupported.
type behindError struct{}

func (behindError) Error() string {
	return "quorumlock: the store's tokens cannot be raised that far yet"
}
func (behindError) Is(target error) bool { return target == ErrUnsupported }
