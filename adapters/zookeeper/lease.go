package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// lease is a granted claim. Ending is its only state change (Core); it
// happens under l.mu, together with its removal from l.leases.
type lease struct {
	leasecore.Core
	ender   leasecore.Ender
	l       *Locker
	path    string
	data    []byte
	ttl     time.Duration // 0: session lease
	session int64         // session lease: the session its node lives on

	// deadline is a TTL lease's local deadline (I3); unused (never
	// started) for a session lease, whose deadline is the session's.
	deadline leasecore.Deadline
}

var _ lock.Lease = (*lease)(nil)

// ttlMargin is how much earlier than the server a TTL lease's holder ends
// it: clock-rate drift (0.2%) and the server's millisecond timestamps.
func ttlMargin(ttl time.Duration) time.Duration { return ttl/500 + 5*time.Millisecond }

// newLeaseLocked registers the lease of a granted claim; l.mu held. A TTL
// lease's deadline is the send time of the SetData that started its TTL
// (c.marked) plus the TTL minus the margin.
func (l *Locker) newLeaseLocked(c *claim, token uint64, session int64) *lease {
	le := &lease{l: l, path: c.path, data: c.data, ttl: c.ttl, session: session}
	le.Core, le.ender = leasecore.New(c.name, token)
	if c.ttl > 0 {
		le.deadline.Start(c.marked.Add(c.ttl-ttlMargin(c.ttl)), func() {
			le.end(fmt.Errorf("%w: TTL %v passed without a Refresh", lock.ErrExpired, le.ttl))
		})
	}
	l.leases[le] = struct{}{}
	return le
}

// endLocked ends the lease once; l.mu held.
func (le *lease) endLocked(why error) {
	if !le.ender.End(why) {
		return
	}
	le.deadline.Stop()
	delete(le.l.leases, le)
}

func (le *lease) end(why error) {
	le.l.mu.Lock()
	le.endLocked(why)
	le.l.mu.Unlock()
}

func (le *lease) notHeld() error { return le.NotHeld("zookeeper") }

// begin starts a Release or Refresh (what) of a lease that has not ended,
// as Locker.begin does for a call.
func (le *lease) begin(ctx context.Context, what string) (context.Context, func(), error) {
	if le.Ended() {
		return nil, nil, le.notHeld()
	}
	opCtx, end, err := le.l.begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("zookeeper: %s %q: %w", what, le.Name(), err)
	}
	return opCtx, end, nil
}

// Release implements lock.Lease. The lease ends at once; its node is
// deleted before Release returns, or, if the store cannot be reached, in the
// background (the returned error says so).
func (le *lease) Release(ctx context.Context) error {
	l := le.l
	opCtx, end, err := le.begin(ctx, "release")
	if err != nil {
		return err
	}
	defer end()
	l.mu.Lock()
	if le.Ended() {
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
	return l.fail(ctx, fmt.Sprintf("release %q (ended here; the node is deleted in the background)", le.Name()), err)
}

// Refresh implements lock.Lease. A TTL lease's node gets a SetData, which
// restarts its TTL on the server, and the local deadline moves to the send
// time of that SetData plus the TTL (minus the margin) — if the reply
// arrives before the old deadline. A session lease is confirmed with a sync
// (confirming the session) and a look at its node.
func (le *lease) Refresh(ctx context.Context) error {
	l := le.l
	opCtx, end, err := le.begin(ctx, "refresh")
	if err != nil {
		return err
	}
	defer end()
	if le.ttl > 0 {
		err = le.refreshTTL(opCtx)
	} else {
		err = le.confirm(opCtx)
	}
	if err != nil && !errors.Is(err, lock.ErrNotHeld) {
		return l.fail(ctx, fmt.Sprintf("refresh %q", le.Name()), err)
	}
	return err
}

// refreshTTL restarts the TTL of a TTL lease's node. A reply that arrives
// after the local deadline does not extend it: the reaper may already
// have chosen the node, so the lease ends.
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
	if le.Ended() {
		return le.notHeld()
	}
	if !le.deadline.Extend(sent.Add(le.ttl - ttlMargin(le.ttl))) {
		le.endLocked(fmt.Errorf("%w: the Refresh was confirmed only after the TTL had passed", lock.ErrExpired))
		return le.notHeld()
	}
	return nil
}

// confirm checks a session lease: a sync confirms the session, then its
// node must still exist on that session.
func (le *lease) confirm(ctx context.Context) error {
	l := le.l
	if err := l.call(ctx, true, func() error { _, err := l.conn.Sync("/"); return err }, nil); err != nil {
		return err
	}
	exists, stat, err := l.exists(ctx, le.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case le.Ended():
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
