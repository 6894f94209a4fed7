package zookeeper

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// CloseTimeout bounds Close: Close is Shutdown with a ctx that ends after
// CloseTimeout.
const CloseTimeout = 5 * time.Second

// errShutLease ends the leases of a Locker that is shutting down.
var errShutLease = fmt.Errorf("%w: its Locker was closed", lock.ErrReleased)

// Close implements lock.Locker: Shutdown bounded by CloseTimeout.
func (l *Locker) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
	defer cancel()
	return l.Shutdown(ctx)
}

// Shutdown stops the Locker within ctx (DESIGN.md, "Shutdown(ctx) and
// Close"): new calls fail with lock.ErrClosed, blocked calls return
// lock.ErrClosed after withdrawing their claims, the calls in progress are
// waited for, every lease ends with lock.ErrReleased (Done closes) and its
// node is deleted, the known orphans are deleted and the connection is
// closed if New made it. When ctx ends first, Shutdown returns anyway with
// an error wrapping ctx's: the leases still end locally; on its own
// connection what is in flight is cut off and the connection's close
// takes the ephemeral nodes along (a TTL node stays until its TTL); on a
// caller's Config.Conn, whose session lives on, the deletes go on in the
// background within the clean-up timeout. Shutdown and Close act once;
// later calls return nil.
func (l *Locker) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel(lock.ErrClosed)
	closing := make(chan struct{}) // closed once the own connection is closed
	if l.ownConn {
		// Past ctx the connection is closed: its session, and every
		// ephemeral node of it, goes with it.
		halt := context.AfterFunc(ctx, func() { l.halt(closing) })
		defer halt()
	}

	var left []string // what ctx left to the store
	drained := waitFor(ctx, &l.ops) && waitFor(ctx, &l.bg)
	if !drained {
		left = append(left, l.inFlightLeft())
	}
	l.mu.Lock()
	leases := make([]*lease, 0, len(l.leases))
	for le := range l.leases {
		leases = append(leases, le)
		le.endLocked(errShutLease)
	}
	l.mu.Unlock()
	cleaned, what := l.cleanUp(ctx, leases)
	left = append(left, what...)

	if cleaned && drained {
		l.halt(closing)
		select {
		case <-closing:
		case <-ctx.Done():
		}
		if !waitFor(ctx, &l.calls) {
			left = append(left, "store requests in flight")
		}
	}
	l.mu.Lock()
	l.setSessionLocked(0) // the gauges of a closed Locker read 0
	l.untracked = true
	l.mu.Unlock()

	if len(left) == 0 {
		return nil
	}
	msg := strings.Join(left, "; ")
	l.log.Warn("zookeeper lock: shutdown: left to the store", "holder", l.id, "left", msg)
	if ctx.Err() != nil {
		return fmt.Errorf("zookeeper: shutdown: ended before cleaning up in the store (%s): %w", msg, ctxError(ctx))
	}
	return fmt.Errorf("zookeeper: shutdown: not cleaned up in the store: %s", msg)
}

// inFlightLeft says what happens to the claims of calls Shutdown stopped
// waiting for.
func (l *Locker) inFlightLeft() string {
	if l.ownConn {
		return "calls in progress (their claims go with the session)"
	}
	return "calls in progress (they withdraw their claims in the background, within the clean-up timeout)"
}

// cleanUp deletes the nodes of leases and the known orphans. On the own
// connection it runs within ctx: past it the connection closes and the
// session takes its ephemeral nodes along. A caller's Conn keeps its
// session, so nothing would ever take them: there the clean-up has a
// bound of its own, the clean-up timeout, and goes on in the background
// if ctx ends first (DESIGN.md, "Shutdown(ctx) and Close"). cleaned
// reports that it has finished; left says what it left.
func (l *Locker) cleanUp(ctx context.Context, leases []*lease) (cleaned bool, left []string) {
	if l.ownConn {
		dctx, cancel := context.WithCancel(l.stopped) // l.stopped ends with ctx (halt)
		defer cancel()
		return true, l.deleteAll(dctx, leases)
	}
	done := make(chan []string, 1)
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), l.cleanupTimeout())
		defer cancel()
		left := l.deleteAll(dctx, leases)
		l.stop() // what the calls in progress still delete has bounds of its own
		done <- left
	}()
	select {
	case left := <-done:
		return true, left
	case <-ctx.Done():
		return false, []string{"lease and orphan nodes: deleted in the background, within the clean-up timeout (a caller's Conn keeps its session)"}
	}
}

// deleteAll deletes the nodes of leases and the known orphans within ctx
// and says what it left.
func (l *Locker) deleteAll(ctx context.Context, leases []*lease) []string {
	var left []string
	undeleted := 0
	for _, le := range leases {
		if _, err := l.deleteMine(ctx, le.mine()); err != nil {
			undeleted++
			l.log.Debug("shutdown: lease node not deleted", "path", le.path, "error", err)
		}
	}
	if undeleted > 0 {
		left = append(left, fmt.Sprintf("%d lease nodes (a session lease's goes with the session, a TTL lease's after its TTL)", undeleted))
	}
	l.cleanOrphans(ctx)
	l.mu.Lock()
	if n := len(l.orphans); n > 0 {
		left = append(left, fmt.Sprintf("%d orphan nodes", n))
	}
	l.mu.Unlock()
	return left
}

// halt cuts off the clean-up: background deletes give up (stopped ends)
// and the own connection is closed, which fails every request in flight.
// closing is closed once the connection is (at once for a caller's Conn).
// go-zookeeper's Close waits up to a second for the server's answer, so
// it runs in its own goroutine; the first call of halt starts it.
func (l *Locker) halt(closing chan struct{}) {
	l.stop()
	l.haltOnce.Do(func() {
		if !l.ownConn {
			close(closing)
			return
		}
		go func() {
			defer close(closing)
			l.conn.Close()
		}()
	})
}

// waitFor waits for wg within ctx and reports whether wg got to zero. Only
// call it once no more Add can start from zero: its waiting goroutine
// stays until wg is done.
func waitFor(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		// With a ctx that had ended already, select picks either case even
		// when wg is at zero; a moment more lets an idle wg be seen as
		// such. Only what Shutdown reports depends on it.
		select {
		case <-done:
			return true
		case <-time.After(time.Millisecond):
			return false
		}
	}
}

// unlessClosed hands le, just granted or adopted, to its caller unless
// Shutdown has begun: it may have collected the leases already, so le is
// ended and its node deleted here, and the call fails with ErrClosed.
// le was registered before this check, so Shutdown finds it, or this
// check sees base cancelled, or both.
func (l *Locker) unlessClosed(le *lease) error {
	if l.base.Err() == nil {
		return nil
	}
	l.mu.Lock()
	le.endLocked(errShutLease)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.stopped, l.cleanupTimeout())
	defer cancel()
	if _, err := l.deleteMine(ctx, le.mine()); err != nil {
		l.mu.Lock()
		o := le.orphanLocked()
		l.mu.Unlock()
		l.addOrphan(o)
	}
	return lock.ErrClosed
}
