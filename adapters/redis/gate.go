package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// gate admits the public calls of a Locker (an instance or a redlock)
// until Shutdown begins, and lets Shutdown wait for the calls in progress
// within its ctx. Its mutex is also the embedder's: it guards the
// embedder's other fields. The embedder makes stop and idle.
type gate struct {
	mu     sync.Mutex
	closed bool          // Shutdown has begun; guarded by mu
	stop   chan struct{} // closed when Shutdown begins
	calls  int           // public calls in progress; guarded by mu
	idle   chan struct{} // closed once Shutdown has begun and no call is in progress
}

// enter registers a public call; it fails once Shutdown has begun. The
// caller calls g.leave when the call ends.
func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return lock.ErrClosed
	}
	g.calls++
	return nil
}

// leave ends a public call registered by enter.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls--
	if g.closed && g.calls == 0 {
		close(g.idle)
	}
}

// openAcquire is the common start of an Acquire or TryAcquire (op names it
// in errors): it validates the request, registers the call and checks ctx.
// On success the caller calls g.leave when the call ends.
func (g *gate) openAcquire(ctx context.Context, op, name string, opts []lock.Option) (lock.Options, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return o, err
	}
	if err := g.enter(); err != nil {
		return o, err
	}
	if err := ctx.Err(); err != nil {
		g.leave()
		return o, fmt.Errorf("redis lock: %s %q: %w", op, name, err)
	}
	return o, nil
}

// openInspect is the common start of an Inspect: it validates name and
// registers the call. On success the caller calls g.leave when the call
// ends.
func (g *gate) openInspect(name string) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	return g.enter()
}

// openLease is the common start of a lease's Release or Refresh: an error
// wrapping lock.ErrNotHeld if the lease l has ended, else the call is
// registered. On success the caller calls g.leave when the call ends.
func (g *gate) openLease(l *leasecore.Core) error {
	if l.Ended() {
		return l.NotHeld("")
	}
	return g.enter()
}

// shut begins Shutdown: it refuses new calls and closes stop, which wakes
// the blocked ones. It reports false if Shutdown had begun already.
func (g *gate) shut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	close(g.stop)
	if g.calls == 0 {
		close(g.idle)
	}
	return true
}

// waitIdle waits until the calls in progress have returned or ctx ends,
// after shut; it reports whether they all returned.
func (g *gate) waitIdle(ctx context.Context) bool {
	select {
	case <-g.idle:
		return true
	default:
	}
	select {
	case <-g.idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// claimID is the n-th claim of the Locker with ID id: "id/n". The wake-up
// script finds the Locker's channel from it.
func claimID(id string, n uint64) string { return id + "/" + strconv.FormatUint(n, 10) }
