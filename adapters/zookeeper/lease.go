package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// lease is a granted claim. Its context is cancelled, with the reason as
// cause, when the lease ends; that is its only state change.
type lease struct {
	l       *Locker
	name    string
	path    string
	data    []byte
	token   uint64
	ttl     time.Duration // 0: session lease
	session int64         // session lease: the session its node lives on
	ctx     context.Context
	cancel  context.CancelCauseFunc

	// TTL leases, under l.mu: the holder's local deadline and its timer.
	deadline time.Time
	timer    *time.Timer
}

var _ lock.Lease = (*lease)(nil)

// ttlMargin is how much earlier than the server a TTL lease's holder ends
// it: clock-rate drift (0.2%) and the server's millisecond timestamps.
func ttlMargin(ttl time.Duration) time.Duration { return ttl/500 + 5*time.Millisecond }

// newLeaseLocked registers the lease of a granted claim; l.mu held. A TTL
// lease's deadline is the send time of the SetData that started its TTL
// (c.marked) plus the TTL minus the margin.
func (l *Locker) newLeaseLocked(c *claim, token uint64, session int64) *lease {
	le := &lease{l: l, name: c.name, path: c.path, data: c.data, token: token, ttl: c.ttl, session: session}
	le.ctx, le.cancel = context.WithCancelCause(context.Background())
	if c.ttl > 0 {
		le.deadline = c.marked.Add(c.ttl - ttlMargin(c.ttl))
		le.timer = time.AfterFunc(time.Until(le.deadline), le.expireLocally)
	}
	l.leases[le] = struct{}{}
	return le
}

func (le *lease) expireLocally() {
	le.l.mu.Lock()
	defer le.l.mu.Unlock()
	if d := time.Until(le.deadline); d > 0 { // a Refresh moved the deadline
		le.timer.Reset(d)
		return
	}
	le.endLocked(fmt.Errorf("%w: TTL %v passed without a Refresh", lock.ErrExpired, le.ttl))
}

// endLocked ends the lease once; l.mu held.
func (le *lease) endLocked(why error) {
	if le.ctx.Err() != nil {
		return
	}
	le.cancel(why)
	if le.timer != nil {
		le.timer.Stop()
	}
	delete(le.l.leases, le)
}

func (le *lease) end(why error) {
	le.l.mu.Lock()
	le.endLocked(why)
	le.l.mu.Unlock()
}

func (le *lease) Name() string             { return le.name }
func (le *lease) Token() uint64            { return le.token }
func (le *lease) Done() <-chan struct{}    { return le.ctx.Done() }
func (le *lease) Context() context.Context { return le.ctx }

func (le *lease) Err() error {
	if le.ctx.Err() == nil {
		return nil
	}
	return context.Cause(le.ctx)
}

func (le *lease) notHeld() error {
	return fmt.Errorf("zookeeper: %q: %w: %w", le.name, lock.ErrNotHeld, le.Err())
}

// Release implements lock.Lease. The lease ends at once; its node is
// deleted before Release returns, or, if the store cannot be reached, in the
// background (the returned error says so).
func (le *lease) Release(ctx context.Context) error {
	l := le.l
	if le.ctx.Err() != nil {
		return le.notHeld()
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return fmt.Errorf("zookeeper: release %q: %w", le.name, err)
	}
	defer end()
	l.mu.Lock()
	if le.ctx.Err() != nil {
		l.mu.Unlock()
		return le.notHeld()
	}
	le.endLocked(lock.ErrReleased)
	l.mu.Unlock()

	err = l.deleteNode(opCtx, le.path)
	if err == nil {
		return nil
	}
	l.addOrphan(orphan{path: le.path, session: le.session})
	return l.fail(ctx, fmt.Sprintf("release %q (ended here; the node is deleted in the background)", le.name), err)
}

// Refresh implements lock.Lease. A TTL lease's node gets a SetData, which
// restarts its TTL on the server, and the local deadline moves to the send
// time of that SetData plus the TTL (minus the margin) — if the reply
// arrives before the old deadline. A session lease is confirmed with a sync
// (confirming the session) and a look at its node.
func (le *lease) Refresh(ctx context.Context) error {
	l := le.l
	if le.ctx.Err() != nil {
		return le.notHeld()
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return fmt.Errorf("zookeeper: refresh %q: %w", le.name, err)
	}
	defer end()
	if le.ttl > 0 {
		err = le.refreshTTL(opCtx)
	} else {
		err = le.confirm(opCtx)
	}
	if err != nil && !errors.Is(err, lock.ErrNotHeld) {
		return l.fail(ctx, fmt.Sprintf("refresh %q", le.name), err)
	}
	return err
}

func (le *lease) refreshTTL(ctx context.Context) error {
	l := le.l
	sent := time.Now()
	err := l.call(ctx, true, func() error { _, err := l.conn.Set(le.path, le.data, -1); return err }, nil)
	if errors.Is(err, zk.ErrNoNode) {
		le.end(fmt.Errorf("%w: the server deleted the node", lock.ErrExpired))
		return le.notHeld()
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if le.ctx.Err() != nil {
		return le.notHeld()
	}
	if !time.Now().Before(le.deadline) {
		le.endLocked(fmt.Errorf("%w: the Refresh was confirmed only after the TTL had passed", lock.ErrExpired))
		return le.notHeld()
	}
	le.deadline = sent.Add(le.ttl - ttlMargin(le.ttl))
	le.timer.Reset(time.Until(le.deadline))
	return nil
}

func (le *lease) confirm(ctx context.Context) error {
	l := le.l
	if err := l.call(ctx, true, func() error { _, err := l.conn.Sync("/"); return err }, nil); err != nil {
		return err
	}
	var (
		exists bool
		stat   *zk.Stat
	)
	if err := l.call(ctx, false, func() (err error) { exists, stat, err = l.conn.Exists(le.path); return err }, nil); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case le.ctx.Err() != nil:
		return le.notHeld()
	case !exists || stat.EphemeralOwner != le.session:
		le.endLocked(fmt.Errorf("%w: its node is gone", lock.ErrLost))
		return le.notHeld()
	case le.session != l.sessID || !time.Now().Before(l.deadline):
		le.endLocked(fmt.Errorf("%w: ZooKeeper session %#x not confirmed", lock.ErrLost, le.session))
		l.orphans[le.path] = orphan{path: le.path, session: le.session}
		return le.notHeld()
	}
	return nil
}
