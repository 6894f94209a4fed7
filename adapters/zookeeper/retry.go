package zookeeper

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/internal/leasecore"
)

// The pause between attempts after a connection-level failure: 10 ms,
// doubling up to 500 ms, each pause jittered by ±25 %.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

// errAgain, returned by an attempt, asks retry to run it again at once: an
// answer of the store calls for a fresh look (the predecessor is gone, the
// directory had to be created, the lowest child was released meanwhile).
// It never leaves retry.
var errAgain = errors.New("zookeeper: look again")

// retry runs attempt until it succeeds or fails for good, and returns its
// last error:
//
//   - nil: done.
//   - errAgain: run attempt again at once.
//   - a retryable error (a connection-level failure): back off, then run
//     attempt again; if ctx ends during the pause, return ctxError(ctx).
//   - any other error: final, returned as it is.
//
// attempt is the unit of work a connection-level failure restarts: one
// request (a delete, a SetData), or a chain of requests whose later steps
// act on the answers of the earlier ones (list the children, then watch the
// predecessor the list named), which is restarted from its first request.
// What each site maps to success, errAgain or a final error (errRequeue,
// ErrHeld) stays in its attempt.
//
// A retryable failure of a write is ambiguous: the write may have been
// applied. Every write an attempt retries is idempotent (a delete, for
// which NoNode is success; a SetData of any version; a container create,
// for which NodeExists is success; the barrier) except the create of a
// claim's sequential node, whose attempt first looks for the node by its
// GUID (create). An attempt may return the error of a nested retry as it
// is: that is final, or ctx's error, which retry returns at once.
func retry(ctx context.Context, attempt func() error) error {
	bo := leasecore.Backoff{Min: retryMin, Max: retryMax}
	for {
		err := attempt()
		switch {
		case errors.Is(err, errAgain):
		case retryable(err):
			if bo.Wait(ctx) != nil {
				return ctxError(ctx)
			}
		default:
			return err
		}
	}
}

// retryable reports whether err is a connection-level failure after which
// the same request may succeed (and a write may or may not have applied).
// go-zookeeper hands a request whose write failed the raw net error (a
// *net.OpError such as "use of closed network connection"), not
// ErrConnectionClosed, so every net.Error counts too (net.ErrClosed is
// one).
func retryable(err error) bool {
	var ne net.Error
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved) ||
		errors.As(err, &ne)
}
