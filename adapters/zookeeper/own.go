package zookeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// What a lease or claim finds on its own node (DESIGN.md, "Ownership" and
// "How the holder learns"). Every write of a lease or claim to its node
// is version-checked, so it never overwrites a revoke or an adoption; a
// BadVersion is looked at here.

// ownNode names a node of this Locker for a version-checked delete.
type ownNode struct {
	path      string
	version   int32 // the version last written or read; -1: unknown, look first
	adoptions uint32
}

// ours reports whether d, a node's data, is this Locker's with that
// adoption count: a lease adopted by another Locker, or by this one again,
// is no longer the old lease's.
func (l *Locker) ours(d nodeData, adoptions uint32) bool {
	return d.format >= formatV2 && d.holder == l.id && d.adoptions == adoptions
}

// deleted says what deleteMine found.
type deleted struct {
	gone    bool // the node was gone already (and no delete of ours was ambiguous)
	revoked bool // it had been marked revoked; it is deleted now
	taken   bool // it is another holder's now, and left alone
}

// deleteMine deletes n's node if it is still ours: a delete with n's
// version; a BadVersion reads the node, and deletes it with its new
// version if it is ours (a write of ours whose reply was lost, or a
// revoke's mark), or leaves it (adopted). Connection-level failures are
// retried until ctx ends.
func (l *Locker) deleteMine(ctx context.Context, n ownNode) (deleted, error) {
	var r deleted
	ambiguous := false
	v := n.version
	err := retry(ctx, func() error {
		if v < 0 {
			d, stat, err := l.readData(ctx, n.path)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				r.gone = !ambiguous
				return nil
			case errors.Is(err, errBadData) || err == nil && !l.ours(d, n.adoptions):
				r.taken = true
				return nil
			case err != nil:
				return err
			}
			r.revoked = d.state == stateRevoked
			v = stat.Version
		}
		err := l.call(ctx, ackQuorum, func() error { return l.conn.Delete(n.path, v) })
		switch {
		case err == nil:
			return nil
		case errors.Is(err, zk.ErrNoNode):
			r.gone = !ambiguous
			return nil
		case errors.Is(err, zk.ErrBadVersion):
			v = -1
			return errAgain
		case retryable(err):
			ambiguous = true
		}
		return err
	})
	return r, err
}

// readData reads and decodes a node (one attempt). A node whose data
// does not decode answers errBadData with its Stat.
func (l *Locker) readData(ctx context.Context, path string) (nodeData, *zk.Stat, error) {
	type answer struct {
		data []byte
		stat *zk.Stat
	}
	a, err := callFor(ctx, l, 0, ackNone, func() (answer, error) {
		data, stat, err := l.conn.Get(path)
		return answer{data, stat}, err
	}, nil)
	if err != nil {
		return nodeData{}, nil, err
	}
	data, stat := a.data, a.stat
	d, err := decodeData(data)
	return d, stat, err
}

// mine names le's node for deleteMine.
func (le *lease) mine() ownNode {
	le.l.mu.Lock()
	defer le.l.mu.Unlock()
	return ownNode{path: le.path, version: le.version, adoptions: le.meta.adoptions}
}

// orphanLocked returns le's node as an orphan: checked for a TTL node,
// which another Locker may adopt; l.mu held.
func (le *lease) orphanLocked() orphan {
	return orphan{path: le.path, session: le.session, checked: le.ttl > 0, version: le.version, adoptions: le.meta.adoptions}
}

// look reads le's node after its version changed under it and acts on
// what it finds: still ours (a write of ours whose reply was lost was
// applied) → take its version; revoked → the holder's part of the revoke;
// another holder → adopted; gone → lost. It reports whether le is still
// held.
func (le *lease) look(ctx context.Context) (bool, error) {
	l := le.l
	d, stat, err := l.readData(ctx, le.path)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		le.vanished()
		return false, nil
	case errors.Is(err, errBadData):
		le.taken(nodeData{}, err)
		return false, nil
	case err != nil:
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case le.Ended():
		return false, nil
	case !l.ours(d, le.meta.adoptions):
		le.takenLocked(d, nil)
		return false, nil
	case d.state == stateRevoked:
		le.revokedLocked(stat.Version)
		return false, nil
	}
	le.version = max(le.version, stat.Version)
	return true, nil
}

// revokedLocked is the holder's part of a revoke (DESIGN.md, "Revoke",
// step 2): the lease ends with ErrRevoked — Done closes — and only then
// its node, marked at version, goes to the orphans, which the prober,
// kicked, deletes at once; that delete hands the name on. l.mu held.
func (le *lease) revokedLocked(version int32) {
	l := le.l
	if le.endLocked(fmt.Errorf("%w: by Revoke", lock.ErrRevoked)) {
		l.log.Warn("lease revoked", "name", le.Name(), "token", le.Token(), "holder", l.id)
	}
	o := le.orphanLocked()
	o.checked, o.version = true, version
	l.orphans[le.path] = o
	leasecore.Kick(l.kickProbe)
}

// taken ends le because its node is another holder's now: adopted (d),
// or overwritten with data this version cannot read (bad). Its node is
// left alone.
func (le *lease) taken(d nodeData, bad error) {
	le.l.mu.Lock()
	defer le.l.mu.Unlock()
	le.takenLocked(d, bad)
}

func (le *lease) takenLocked(d nodeData, bad error) {
	l := le.l
	if bad == nil && d.format >= formatV2 && d.holder != "" {
		if le.endLocked(fmt.Errorf("%w: now held by %s", lock.ErrAdopted, d.holder)) {
			l.log.Warn("lease adopted by another locker", "name", le.Name(), "token", le.Token(), "holder", l.id, "adopter", d.holder, "adopter_node", d.node)
		}
		return
	}
	if le.endLocked(fmt.Errorf("%w: its node was overwritten", lock.ErrLost)) {
		l.log.Warn("lease lost: its node was overwritten", "name", le.Name(), "token", le.Token(), "holder", l.id, "error", bad)
	}
}

// vanished ends le because its node is gone (an operator deleted it, or a
// revoker after the grace).
func (le *lease) vanished() {
	l := le.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if le.endLocked(fmt.Errorf("%w: its node is gone", lock.ErrLost)) {
		l.log.Warn("lease lost: its node is gone", "name", le.Name(), "token", le.Token(), "holder", l.id)
	}
}

// pollLeases looks at every lease of the Locker once (the prober calls it
// after a successful probe): a node that changed is looked at (look), a
// node that is gone ends its lease, and a session lease that waited gets
// its grant time written (writeStamp).
func (l *Locker) pollLeases(ctx context.Context) {
	l.mu.Lock()
	list := make([]*lease, 0, len(l.leases))
	for le := range l.leases {
		list = append(list, le)
	}
	l.mu.Unlock()
	for _, le := range list {
		if ctx.Err() != nil {
			return
		}
		if err := le.poll(ctx); err != nil && ctx.Err() == nil {
			l.log.Debug("lease poll failed", "name", le.Name(), "error", err)
		}
	}
}

// poll is pollLeases for one lease.
func (le *lease) poll(ctx context.Context) error {
	l := le.l
	ok, stat, err := l.exists(ctx, le.path)
	switch {
	case err != nil:
		return err
	case !ok:
		le.vanished()
		return nil
	}
	l.mu.Lock()
	version, stamp := le.version, le.stamp
	l.mu.Unlock()
	switch {
	case stat.Version != version:
		_, err = le.look(ctx)
	case stamp != 0:
		err = le.writeStamp(ctx)
	}
	return err
}

// lookHeld is look for a Refresh: nil if le is still held, else look's
// error or the lease's end error (ErrNotHeld).
func (le *lease) lookHeld(ctx context.Context) error {
	held, err := le.look(ctx)
	switch {
	case err != nil:
		return err
	case !held:
		return le.notHeld()
	}
	return nil
}

// writeStamp writes the grant time of a session lease that waited into
// its node (DESIGN.md, "Durations on the server's clock"), in the
// lease's write turn: if another write has it, the prober does not wait
// for it (the stamp stays due, for its next round).
func (le *lease) writeStamp(ctx context.Context) error {
	l := le.l
	done := le.tryTurn()
	if done == nil {
		return nil
	}
	defer done()
	l.mu.Lock()
	d, version := le.meta, le.version
	d.state, d.granted = stateGranted, le.stamp
	l.mu.Unlock()
	stat, err := callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(le.path, encodeData(d), version) }, nil)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		le.vanished()
		return nil
	case errors.Is(err, zk.ErrBadVersion):
		_, err = le.look(ctx)
		return err
	case err != nil:
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	le.meta, le.stamp = d, 0
	le.version = max(le.version, stat.Version)
	return nil
}
