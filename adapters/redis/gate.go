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
// until Close begins, and lets Close wait for the calls in progress. Its
// mutex is also the embedder's: it guards the embedder's other fields.
// The embedder makes stop.
type gate struct {
	mu     sync.Mutex
	closed bool           // Close has begun; guarded by mu
	stop   chan struct{}  // closed when Close begins
	calls  sync.WaitGroup // public calls in progress
}

// enter registers a public call; it fails once Close has begun. The caller
// calls g.calls.Done when the call ends.
func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return lock.ErrClosed
	}
	g.calls.Add(1)
	return nil
}

// openAcquire is the common start of an Acquire or TryAcquire (op names it
// in errors): it validates the request, registers the call and checks ctx.
// On success the caller calls g.calls.Done when the call ends.
func (g *gate) openAcquire(ctx context.Context, op, name string, opts []lock.Option) (lock.Options, error) {
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return o, err
	}
	if err := g.enter(); err != nil {
		return o, err
	}
	if err := ctx.Err(); err != nil {
		g.calls.Done()
		return o, fmt.Errorf("redis lock: %s %q: %w", op, name, err)
	}
	return o, nil
}

// openInspect is the common start of an Inspect: it validates name and
// registers the call. On success the caller calls g.calls.Done when the
// call ends.
func (g *gate) openInspect(name string) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	return g.enter()
}

// openLease is the common start of a lease's Release or Refresh: an error
// wrapping lock.ErrNotHeld if the lease l has ended, else the call is
// registered. On success the caller calls g.calls.Done when the call ends.
func (g *gate) openLease(l *leasecore.Core) error {
	if l.Ended() {
		return l.NotHeld("")
	}
	return g.enter()
}

// shut begins Close: it refuses new calls, closes stop and waits for the
// calls in progress. It reports false if Close had begun already.
func (g *gate) shut() bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.closed = true
	close(g.stop)
	g.mu.Unlock()
	g.calls.Wait()
	return true
}

// claimID is the n-th claim of the Locker with ID id: "id/n". The wake-up
// script finds the Locker's channel from it.
func claimID(id string, n uint64) string { return id + "/" + strconv.FormatUint(n, 10) }
