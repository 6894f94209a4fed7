package lock

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits enforced by ValidateName and Options on every backend.
const (
	MaxNameLen  = 512      // bytes
	MaxOwnerLen = 64 << 10 // bytes
	MinTTL      = 100 * time.Millisecond
	MaxTTL      = 24 * time.Hour
)

// Option configures one Acquire or TryAcquire call.
type Option func(*Options)

// Options is the resolved form of a list of Option values. Backends obtain it
// with NewOptions; applications use the With functions.
type Options struct {
	// TTL is zero for a session lease, else the TTL of a TTL lease.
	TTL time.Duration
	// Owner is free-form metadata stored with the lease and shown by Inspect.
	Owner string

	ttlSet bool
}

// WithTTL makes the lease a TTL lease: it expires d after the grant or the
// last Refresh, whether or not the holder is alive, and is not renewed in the
// background. d must be between MinTTL and MaxTTL.
func WithTTL(d time.Duration) Option {
	return func(o *Options) { o.TTL, o.ttlSet = d, true }
}

// WithOwner stores s with the lease (at most MaxOwnerLen bytes of valid
// UTF-8); Inspect reports it. Use it to say who holds a lock (host, process, job).
func WithOwner(s string) Option {
	return func(o *Options) { o.Owner = s }
}

// NewOptions applies opts in order and validates the result. The error wraps
// ErrInvalidOption.
func NewOptions(opts ...Option) (Options, error) {
	var o Options
	for _, opt := range opts {
		if opt == nil {
			return Options{}, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		opt(&o)
	}
	if o.ttlSet && (o.TTL < MinTTL || o.TTL > MaxTTL) {
		return Options{}, fmt.Errorf("%w: TTL %v outside [%v, %v]", ErrInvalidOption, o.TTL, MinTTL, MaxTTL)
	}
	if len(o.Owner) > MaxOwnerLen {
		return Options{}, fmt.Errorf("%w: owner is %d bytes, limit %d", ErrInvalidOption, len(o.Owner), MaxOwnerLen)
	}
	if !utf8.ValidString(o.Owner) {
		return Options{}, fmt.Errorf("%w: owner is not valid UTF-8", ErrInvalidOption)
	}
	return o, nil
}

// ValidateName reports whether name is a valid lock name: 1 to MaxNameLen
// bytes of valid UTF-8 without control characters. The error wraps
// ErrInvalidName.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character %U", ErrInvalidName, r)
		}
	}
	return nil
}

// ValidateRequest validates a name and options together, as every backend
// does before any I/O.
func ValidateRequest(name string, opts ...Option) (Options, error) {
	if err := ValidateName(name); err != nil {
		return Options{}, err
	}
	return NewOptions(opts...)
}
