package redis

import (
	"errors"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Errors of this package; the lock contract's errors (lock.ErrHeld, ...) are
// returned as well. Test with errors.Is.
var (
	// ErrInvalidConfig: New was given a Config it cannot use; the message
	// names the field.
	ErrInvalidConfig = errors.New("redis lock: invalid config")
	// ErrStoreReset: the store lost its data (its epoch key changed), so
	// tokens may repeat. Leases ended for this reason have an Err that wraps
	// both lock.ErrLost and ErrStoreReset.
	ErrStoreReset = errors.New("redis lock: store reset detected")
	// ErrEvictionPolicy: the store's maxmemory-policy may evict keys (it is
	// not noeviction), or it cannot be read; calls refuse to use such a
	// store unless Config.SkipEvictionCheck is set (see DESIGN.md).
	ErrEvictionPolicy = errors.New("redis lock: unsafe eviction policy")
	// ErrUnexpectedReply: a script answered something this version does not
	// understand (a different adapter version on the same prefix?).
	ErrUnexpectedReply = errors.New("redis lock: unexpected reply")

	// errLateGrant: a grant's answer came back with too little of its TTL
	// left and could not be renewed; it was given back. The store was too
	// slow to hold a lease with: it wraps lock.ErrNoQuorum, which is what a
	// TryAcquire that meets it returns (an Acquire tries again).
	errLateGrant = fmt.Errorf("%w: the grant was answered too late and was given back", lock.ErrNoQuorum)
	// errNoAnswer: the store had not answered when the caller's ctx ended
	// (retryable: it counts as unreachable).
	errNoAnswer = errors.New("redis lock: the store did not answer")
)
