package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	ttl     time.Duration // 0: session lease
	session int64         // session lease: the session its node lives on

	// Under l.mu: the record the lease writes to its node (its adoption
	// count says which lease of the node this is), the node's version as
	// last written or read, and, for a session lease that waited, the grant
	// time the prober is to write (0: none).
	meta    nodeData
	version int32
	stamp   int64

	// writing holds the lease's write turn (a token in a one-slot
	// channel): a write reads meta and version, sends its SetData and
	// records what it wrote, all in its turn, so that no write is sent
	// from a record that misses another's acknowledged change (turn).
	writing chan struct{}

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
	le := &lease{l: l, path: c.path, ttl: c.ttl, session: session, meta: c.meta, version: c.version, writing: make(chan struct{}, 1)}
	le.Core, le.ender = leasecore.NewMeasured(c.name, token, kindOf(c.ttl), l.sink)
	if c.ttl > 0 {
		le.deadline.Start(c.marked.Add(c.ttl-ttlMargin(c.ttl)), func() {
			le.end(fmt.Errorf("%w: TTL %v passed without a Refresh", lock.ErrExpired, le.ttl))
		})
	}
	l.leases[le] = struct{}{}
	return le
}

// kindOf is the kind of a lease with ttl (0: a session lease).
func kindOf(ttl time.Duration) lock.Kind {
	if ttl > 0 {
		return lock.KindTTL
	}
	return lock.KindSession
}

// endLocked ends the lease once, and reports whether this call ended it;
// l.mu held.
func (le *lease) endLocked(why error) bool {
	if !le.ender.End(why) {
		return false
	}
	le.deadline.Stop()
	delete(le.l.leases, le)
	return true
}

func (le *lease) end(why error) {
	le.l.mu.Lock()
	le.endLocked(why)
	le.l.mu.Unlock()
}

func (le *lease) notHeld() error { return le.NotHeld("zookeeper") }

// begin starts a Release or Refresh (what), as Locker.begin does for a
// call.
func (le *lease) begin(ctx context.Context, what string) (context.Context, func(), error) {
	opCtx, end, err := le.l.begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("zookeeper: %s %q: %w", what, le.Name(), err)
	}
	return opCtx, end, nil
}

// orphanEndedLocked leaves the node of a lease that ended here without a
// Release (expired or lost) for background deletion, and reports whether
// it did: the node may still be in the store (a lost session lease whose
// session lived on; a TTL lease whose late Refresh restarted its TTL on the
// server). Its path is this claim's alone, so the delete is a no-op if the
// node is gone and never touches another claim; a TTL node is deleted only
// while it is ours (not adopted meanwhile). The node of an adopted lease
// is the adopter's: left alone. l.mu held.
func (le *lease) orphanEndedLocked() bool {
	if !le.Ended() || errors.Is(le.Err(), lock.ErrReleased) || errors.Is(le.Err(), lock.ErrAdopted) {
		return false
	}
	le.l.orphans[le.path] = le.orphanLocked()
	return true
}

// endedLocked answers a Release or Refresh of an ended lease: ErrNotHeld
// with the cause; a Release also schedules its node's deletion. l.mu held.
func (le *lease) endedLocked(release bool) error {
	if release && le.orphanEndedLocked() {
		leasecore.Kick(le.l.kickProbe)
	}
	return le.notHeld()
}

// naturalEndLocked is when the lease would end now if it were not
// released: a TTL lease's local deadline, or the session's acknowledged
// deadline (which later acknowledgements move on), or now if the session
// has changed; l.mu held.
func (le *lease) naturalEndLocked() time.Time {
	switch {
	case le.ttl > 0:
		return le.deadline.At()
	case le.session != le.l.sessID:
		return time.Now()
	}
	return le.l.deadline
}

// errNaturalEnd ends a Release's wait for its delete.
var errNaturalEnd = errors.New("zookeeper: the lease's deadline passed")

// untilNaturalEnd returns a ctx that ends with ctx or when the lease would
// have ended on its own had it not been released (naturalEndLocked, looked
// at again whenever the last look has passed).
func (le *lease) untilNaturalEnd(ctx context.Context) (context.Context, func()) {
	nctx, cancel := context.WithCancelCause(ctx)
	var (
		mu    sync.Mutex
		t     *time.Timer
		check func()
	)
	check = func() {
		le.l.mu.Lock()
		at := le.naturalEndLocked()
		le.l.mu.Unlock()
		left := time.Until(at)
		if left <= 0 {
			cancel(errNaturalEnd)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if nctx.Err() == nil {
			t = time.AfterFunc(left, check)
		}
	}
	check()
	return nctx, func() {
		cancel(nil)
		mu.Lock()
		defer mu.Unlock()
		if t != nil {
			t.Stop()
		}
	}
}

// Release implements lock.Lease. The lease ends at once (Done closes before
// the store can hand the name on); its node is deleted before Release
// returns, unless ctx ends first or the lease would have ended on its own
// meanwhile (its session or TTL deadline passed: then the store will free
// the name without us) — then the node is deleted in the background and the
// error says so (R4). A node that was already gone means the lease had been
// lost: ErrNotHeld wrapping ErrLost; one that was revoked is deleted all
// the same (ErrNotHeld wrapping ErrRevoked); one that another Locker
// adopted is left to it (ErrNotHeld wrapping ErrAdopted). A lease that had
// already ended answers ErrNotHeld with its cause at once; if it expired
// or was lost, its node is deleted in the background.
func (le *lease) Release(ctx context.Context) error {
	l := le.l
	l.mu.Lock()
	if le.Ended() {
		defer l.mu.Unlock()
		return le.endedLocked(true)
	}
	l.mu.Unlock()
	opCtx, end, err := le.begin(ctx, "release")
	if err != nil {
		return err
	}
	defer end()
	l.mu.Lock()
	if le.Ended() {
		defer l.mu.Unlock()
		return le.endedLocked(true)
	}
	le.endLocked(lock.ErrReleased)
	l.mu.Unlock()

	dctx, cancel := le.untilNaturalEnd(opCtx)
	defer cancel()
	r, err := l.deleteMine(dctx, le.mine())
	switch {
	case err == nil && r.taken:
		return fmt.Errorf("zookeeper: release %q: %w: %w: another Locker adopted it", le.Name(), lock.ErrNotHeld, lock.ErrAdopted)
	case err == nil && r.revoked:
		l.log.Warn("lease revoked", "name", le.Name(), "token", le.Token(), "holder", l.id)
		return fmt.Errorf("zookeeper: release %q: %w: %w: its node is deleted", le.Name(), lock.ErrNotHeld, lock.ErrRevoked)
	case err == nil && r.gone:
		return fmt.Errorf("zookeeper: release %q: %w: %w: its node was already gone", le.Name(), lock.ErrNotHeld, lock.ErrLost)
	case err == nil:
		return nil
	}
	l.mu.Lock()
	o := le.orphanLocked()
	l.mu.Unlock()
	l.addOrphan(o)
	leasecore.Kick(l.kickProbe)
	what := fmt.Sprintf("release %q (ended here; the node is deleted in the background)", le.Name())
	if ctx.Err() == nil && l.base.Err() == nil && errors.Is(context.Cause(dctx), errNaturalEnd) {
		nq := l.noQuorum(traceOf(opCtx))
		if nq == nil {
			nq = err
		}
		return fmt.Errorf("zookeeper: %s: %w; its session or TTL deadline passed before the delete was acknowledged: %w", what, le.notHeld(), nq)
	}
	return l.fail(ctx, opCtx, what, err)
}

// errLeaseEnded stops a Refresh's store call when the lease ends.
var errLeaseEnded = errors.New("zookeeper: the lease ended")

// Refresh implements lock.Lease. A TTL lease's node gets a SetData, which
// restarts its TTL on the server, and the local deadline moves to the send
// time of that SetData plus the TTL (minus the margin) — if the reply
// arrives before the old deadline. A session lease is confirmed with a sync
// (confirming the session) and a look at its node. Once the lease has
// ended, Refresh returns ErrNotHeld with the cause at once, whatever ctx
// (R2, R4); a TTL lease's node then goes to the orphans, as the SetData may
// still restart its TTL on the server.
func (le *lease) Refresh(ctx context.Context) error {
	return le.update(ctx, "refresh", nil)
}

// update is Refresh (edit nil) or, with edit, a change of the lease's
// record written to its node (a term's Proclaim): a version-checked
// SetData, which also refreshes a TTL lease. It answers as Refresh does.
func (le *lease) update(ctx context.Context, what string, edit func(*nodeData)) error {
	l := le.l
	if le.Ended() {
		return le.notHeld()
	}
	opCtx, end, err := le.begin(ctx, what)
	if err != nil {
		return err
	}
	defer end()
	rctx, cancel := context.WithCancelCause(opCtx)
	defer cancel(nil)
	stop := context.AfterFunc(le.Context(), func() { cancel(errLeaseEnded) })
	defer stop()
	if le.ttl > 0 || edit != nil {
		err = le.write(rctx, edit)
	} else {
		err = le.confirm(rctx)
	}
	if le.Ended() {
		l.mu.Lock()
		defer l.mu.Unlock()
		return le.endedLocked(le.ttl > 0)
	}
	if err != nil {
		return l.fail(ctx, opCtx, fmt.Sprintf("%s %q", what, le.Name()), err)
	}
	return nil
}

// write is a version-checked SetData of the lease's record, changed by
// edit if not nil; for a TTL lease it is the Refresh, which restarts the
// TTL and (if the record has it) carries the grant time the grant's reply
// told. A BadVersion is looked at (look): revoked or adopted ends the
// lease; a write of ours whose reply was lost is taken and the SetData
// sent again. A TTL lease's reply that arrives after the local deadline
// does not extend it: the reaper may already have chosen the node, so the
// lease ends.
func (le *lease) write(ctx context.Context, edit func(*nodeData)) error {
	l := le.l
	done, err := le.turn(ctx)
	if err != nil {
		return err
	}
	defer done()
	for {
		l.mu.Lock()
		d, version := le.meta, le.version
		l.mu.Unlock()
		if edit != nil {
			edit(&d)
		}
		sent := time.Now()
		stat, err := callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(le.path, encodeData(d), version) }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			le.vanished()
			return le.notHeld()
		case errors.Is(err, zk.ErrBadVersion):
			if err := le.lookHeld(ctx); err != nil {
				return err
			}
			continue // a write of ours whose reply was lost: again
		case err != nil:
			return err
		}
		l.hooks.call(func(h *hooks) func() { return h.writeAcked })
		return le.written(d, sent, stat)
	}
}

// turn waits for the lease's write turn (writing), until ctx ends, and
// returns its release. Without it a write that met a BadVersion would
// send again from meta as it was before a concurrent write recorded its
// change — a Refresh, or the prober's grant-time stamp, overwriting a
// Proclaim that returned nil.
func (le *lease) turn(ctx context.Context) (func(), error) {
	select {
	case le.writing <- struct{}{}:
	default:
		le.l.hooks.call(func(h *hooks) func() { return h.writeWaits })
		select {
		case le.writing <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	return func() { <-le.writing }, nil
}

// tryTurn takes the lease's write turn if it is free, and returns its
// release (nil: another write has it).
func (le *lease) tryTurn() func() {
	select {
	case le.writing <- struct{}{}:
		return func() { <-le.writing }
	default:
		return nil
	}
}

// written records that the lease's record d, sent at sent, was
// acknowledged with stat, and moves a TTL lease's deadline, unless the
// old deadline passed first.
func (le *lease) written(d nodeData, sent time.Time, stat *zk.Stat) error {
	le.l.mu.Lock()
	defer le.l.mu.Unlock()
	le.version = max(le.version, stat.Version)
	if le.Ended() {
		return le.notHeld()
	}
	le.meta = d
	if le.ttl > 0 && !le.deadline.Extend(sent.Add(le.ttl-ttlMargin(le.ttl))) {
		le.endLocked(fmt.Errorf("%w: the Refresh was confirmed only after the TTL had passed", lock.ErrExpired))
		return le.notHeld()
	}
	return nil
}

// confirm checks a session lease: a sync confirms the session, then its
// node must still exist on that session, unchanged (a changed node is
// looked at: revoked ends the lease).
func (le *lease) confirm(ctx context.Context) error {
	l := le.l
	if err := l.call(ctx, ackSession, func() error { _, err := l.conn.Sync("/"); return err }); err != nil {
		return err
	}
	exists, stat, err := l.exists(ctx, le.path)
	if err != nil {
		return err
	}
	if exists && stat.EphemeralOwner == le.session && stat.Version != le.mine().version {
		if err := le.lookHeld(ctx); err != nil {
			return err
		}
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
		l.orphans[le.path] = le.orphanLocked()
		return le.notHeld()
	}
	return nil
}
