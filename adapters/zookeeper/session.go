package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// sessionTimeout is the session timeout the deadlines are computed with:
// the configured one, or the negotiated one if the server lowered it.
func (l *Locker) sessionTimeout() time.Duration {
	t := l.cfg.SessionTimeout
	if n := time.Duration(l.negotiated.Load()); n > 0 && n < t {
		t = n
	}
	return t
}

// sessionMargin is SessionMargin, or half the session timeout.
func (l *Locker) sessionMargin(t time.Duration) time.Duration {
	if m := l.cfg.SessionMargin; m > 0 && m < t {
		return m
	}
	return t / 2
}

// probeInterval is the period of the session probe.
func (l *Locker) probeInterval() time.Duration { return l.sessionTimeout() / 8 }

// ttlMargin is how much earlier than the server a TTL lease's holder ends
// it: clock-rate drift (0.2%) and the server's millisecond timestamps.
func ttlMargin(ttl time.Duration) time.Duration { return ttl/500 + 5*time.Millisecond }

// cleanupTimeout bounds the deletes made after a caller's ctx has ended.
func (l *Locker) cleanupTimeout() time.Duration {
	return min(l.sessionTimeout(), 5*time.Second)
}

// pending is the hand-over between a store call and its caller.
type pending struct {
	mu   sync.Mutex
	gone bool // the caller stopped waiting
	done chan error
}

// call runs fn, one blocking go-zookeeper call, and returns its error, or
// ctx's error if ctx ends first. If fn completes after the caller left,
// late (if not nil) gets fn's error, in the call's goroutine. write marks
// calls that pass through the leader: their success confirms the session.
func (l *Locker) call(ctx context.Context, write bool, fn func() error, late func(error)) error {
	return l.callGrace(ctx, 0, write, fn, late)
}

// callGrace is call, but when ctx ends first it still waits up to grace for
// fn's result, and returns that result if it comes. Creates use it so that
// a node whose create raced a cancellation is known to the caller, who
// deletes it before returning.
func (l *Locker) callGrace(ctx context.Context, grace time.Duration, write bool, fn func() error, late func(error)) error {
	if err := ctx.Err(); err != nil {
		return ctxError(ctx)
	}
	if ctx.Done() == nil {
		return l.exec(write, fn)
	}
	p := &pending{done: make(chan error, 1)}
	l.calls.Add(1)
	go func() {
		defer l.calls.Done()
		err := l.exec(write, fn)
		p.mu.Lock()
		gone := p.gone
		if !gone {
			p.done <- err
		}
		p.mu.Unlock()
		if gone && late != nil {
			late(err)
		}
	}()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		if grace > 0 {
			t := time.NewTimer(grace)
			select {
			case err := <-p.done:
				t.Stop()
				return err
			case <-t.C:
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		select {
		case err := <-p.done:
			return err
		default:
		}
		p.gone = true
		return ctxError(ctx)
	}
}

// exec runs fn and records a write's acknowledgement of the session.
func (l *Locker) exec(write bool, fn func() error) error {
	before, sent := l.conn.SessionID(), time.Now()
	err := fn()
	if write && answered(err) {
		l.ack(sent, before, l.conn.SessionID())
	}
	return err
}

// answered reports whether err is a reply of the server (so the request
// reached it), as opposed to a connection-level failure.
func answered(err error) bool {
	return err == nil || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) ||
		errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNotEmpty)
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

// ctxError is ctx's error, with its cause if that says more; it satisfies
// errors.Is(err, ctx.Err()).
func ctxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || errors.Is(cause, err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxError(ctx)
	}
}

// backoff is the pause between retries after a connection-level failure.
type backoff struct{ d time.Duration }

func (b *backoff) wait(ctx context.Context) error {
	b.d = min(max(2*b.d, 10*time.Millisecond), 500*time.Millisecond)
	return sleepCtx(ctx, b.d)
}

// ack records that the server answered a request sent at sent on session
// before (== after, the session after the reply): the session cannot expire
// on the server before sent + the session timeout.
func (l *Locker) ack(sent time.Time, before, after int64) {
	if before == 0 || before != after {
		return
	}
	t := l.sessionTimeout()
	d := sent.Add(t - l.sessionMargin(t))
	l.mu.Lock()
	defer l.mu.Unlock()
	if before != l.sessID {
		// A newer session than the one tracked: only if the connection is on
		// it now (a late reply from an old session must not switch back).
		if before != l.conn.SessionID() {
			return
		}
		if l.sessID != 0 {
			l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x expired", lock.ErrLost, l.sessID))
		}
		l.sessID, l.deadline = before, time.Time{}
	}
	if d.After(l.deadline) {
		wasStale := !l.deadline.After(time.Now())
		l.deadline = d
		l.broadcastLocked()
		if wasStale {
			kick(l.kickWatch)
		}
	}
}

// broadcastLocked wakes everyone waiting for a session change; l.mu held.
func (l *Locker) broadcastLocked() {
	close(l.fresh)
	l.fresh = make(chan struct{})
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// loseSessionLocked ends every session lease of the tracked session with
// why and schedules the deletion of their nodes; l.mu held.
func (l *Locker) loseSessionLocked(why error) {
	for le := range l.leases {
		if le.ttl == 0 && le.session == l.sessID {
			le.endLocked(why)
			l.orphans[le.path] = orphan{path: le.path, session: le.session}
			l.log.Debug("session lease lost", "name", le.name, "path", le.path, "error", why)
		}
	}
}

// checkSessionLocked ends the session leases if the session is gone or its
// deadline has passed, and returns when to look again; l.mu held.
func (l *Locker) checkSessionLocked(now time.Time) time.Time {
	if cur := l.conn.SessionID(); l.sessID != 0 && cur != l.sessID {
		l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x expired", lock.ErrLost, l.sessID))
		l.sessID, l.deadline = 0, time.Time{}
		l.broadcastLocked()
	}
	if l.deadline.IsZero() {
		return time.Time{}
	}
	if !now.Before(l.deadline) {
		l.loseSessionLocked(fmt.Errorf("%w: ZooKeeper session %#x not confirmed for the session timeout %v minus margin; the server may have expired it",
			lock.ErrLost, l.sessID, l.sessionTimeout()))
		return time.Time{}
	}
	return l.deadline
}

// watchdog ends session leases at their deadline.
func (l *Locker) watchdog() {
	defer l.bg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.mu.Lock()
		next := l.checkSessionLocked(time.Now())
		l.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-l.kickWatch:
		case <-l.base.Done():
			return
		}
	}
}

// prober confirms the session every probe interval with a sync (which goes
// through the leader) and deletes orphaned nodes while the store answers.
func (l *Locker) prober() {
	defer l.bg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.kickProbe:
		case <-l.base.Done():
			return
		}
		err := l.call(l.base, true, func() error { _, err := l.conn.Sync("/"); return err }, nil)
		kick(l.kickWatch)
		if err == nil {
			// Bounded, so that a connection lost meanwhile does not hold up
			// the next probe.
			ctx, cancel := context.WithTimeout(l.base, l.probeInterval())
			l.cleanOrphans(ctx)
			cancel()
		} else if l.base.Err() == nil {
			l.log.Debug("session probe failed", "error", err)
		}
		t.Reset(l.probeInterval())
	}
}

// orphan is a node to delete in the background: path, or every child of
// dir carrying guid when the path is unknown. session is the session an
// ephemeral node belongs to (0: not ephemeral or unknown).
type orphan struct {
	path    string
	dir     string
	guid    string
	session int64
}

func (o orphan) key() string {
	if o.path != "" {
		return o.path
	}
	return o.dir + "/" + protectedPrefix + o.guid
}

func (l *Locker) addOrphan(o orphan) {
	l.mu.Lock()
	l.orphans[o.key()] = o
	l.mu.Unlock()
	l.log.Debug("node left for background deletion", "node", o.key())
}

// cleanOrphans makes one attempt to delete every orphan.
func (l *Locker) cleanOrphans(ctx context.Context) {
	l.mu.Lock()
	if len(l.orphans) == 0 {
		l.mu.Unlock()
		return
	}
	list := make([]orphan, 0, len(l.orphans))
	for _, o := range l.orphans {
		list = append(list, o)
	}
	l.mu.Unlock()
	for _, o := range list {
		if l.deleteOrphan(ctx, o) {
			l.mu.Lock()
			delete(l.orphans, o.key())
			l.mu.Unlock()
		}
	}
}

// deleteOrphan reports whether o is gone.
func (l *Locker) deleteOrphan(ctx context.Context, o orphan) bool {
	if o.session != 0 && o.session != l.conn.SessionID() {
		return true // an ephemeral node of a session that has ended
	}
	if o.path != "" {
		return l.deleteNode(ctx, o.path) == nil
	}
	var (
		names []string
		bo    backoff
	)
	for {
		err := l.call(ctx, false, func() (err error) { names, _, err = l.conn.Children(o.dir); return err }, nil)
		if errors.Is(err, zk.ErrNoNode) {
			return true
		}
		if err == nil {
			break
		}
		if !retryable(err) || bo.wait(ctx) != nil {
			return false
		}
	}
	gone := true
	for _, k := range sortedChildren(names) {
		if k.guid == o.guid {
			gone = l.deleteNode(ctx, o.dir+"/"+k.name) == nil && gone
		}
	}
	return gone
}

// zkLogger forwards go-zookeeper's log lines to the Locker's logger at debug
// level and learns the negotiated session timeout from the line it writes
// after each handshake ("authenticated: id=%d, timeout=%d").
type zkLogger struct {
	log        *slog.Logger
	negotiated *atomic.Int64
}

func (z zkLogger) Printf(format string, args ...any) {
	if strings.HasPrefix(format, "authenticated: id=%d, timeout=%d") && len(args) == 2 {
		if ms, ok := args[1].(int32); ok && ms > 0 {
			z.negotiated.Store(int64(time.Duration(ms) * time.Millisecond))
		}
	}
	if z.log.Enabled(context.Background(), slog.LevelDebug) {
		z.log.Debug(fmt.Sprintf(format, args...), "component", "go-zookeeper")
	}
}
