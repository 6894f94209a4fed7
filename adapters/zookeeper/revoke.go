package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Revoke implements lock.Revoker (DESIGN.md, "Revoke"): it marks the
// holder's node revoked, then waits until the node is gone — deleted by
// its holder, which closes the lease's Done first; for a TTL lease, by
// this Locker after the grace; for a session lease, with its session.
func (l *Locker) Revoke(ctx context.Context, name string, token uint64) error {
	if err := lock.ValidateName(name); err != nil {
		return err
	}
	if err := lock.ValidateToken(token); err != nil {
		return fmt.Errorf("zookeeper: revoke %q: %w", name, err)
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return fmt.Errorf("zookeeper: revoke %q: %w", name, err)
	}
	defer end()
	what := fmt.Sprintf("revoke %q (token %d)", name, token)
	m, err := l.mark(opCtx, name, token)
	if err != nil {
		return l.fail(ctx, opCtx, what, err)
	}
	l.revokedHere(m)
	if m.ttl {
		// The wait and the forced delete outlive ctx: the revoke completes
		// on its own.
		done := l.forceAfter(m.path, time.Now().Add(max(l.sessionTimeout(), m.holderTimeout)))
		select {
		case err = <-done:
		case <-opCtx.Done():
			err = ctxError(opCtx)
		}
	} else {
		err = l.awaitGone(opCtx, m.path, time.Time{})
	}
	if err != nil {
		return l.fail(ctx, opCtx, what, err)
	}
	return nil
}

// marked is a node Revoke has marked.
type marked struct {
	path          string
	version       int32 // after the mark
	ttl           bool
	holderTimeout time.Duration // from the holder's record
}

// mark finds the holder's node of name (barrier, list, read the lowest
// child), checks its token and writes its record in state revoked, with
// the version read. A node marked already is left as it is.
func (l *Locker) mark(ctx context.Context, name string, token uint64) (marked, error) {
	var m marked
	err := retry(ctx, func() error {
		path, d, stat, err := l.holderNode(ctx, name, token)
		if err != nil {
			return err
		}
		m = marked{path: path, version: stat.Version, ttl: d.ttl > 0, holderTimeout: d.timeout}
		if d.state == stateRevoked {
			return nil
		}
		d.format, d.state, d.granted = formatV2, stateRevoked, grantTime(d, stat)
		st, err := callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(path, encodeData(d), stat.Version) }, nil)
		switch {
		case errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode):
			return errAgain // changed or gone meanwhile: look again
		case err != nil:
			return err
		}
		m.version = st.Version
		return nil
	})
	return m, err
}

// holderNode reads the node of name's lease with token after a barrier:
// one of the holders (holding: the lowest child; for a semaphore or
// readers, any of those that hold), read in order until one has token as
// its czxid (ErrNotHeld if none has).
func (l *Locker) holderNode(ctx context.Context, name string, token uint64) (string, nodeData, *zk.Stat, error) {
	notHeld := fmt.Errorf("%w: %q is not held with token %d", lock.ErrNotHeld, name, token)
	if _, err := l.barrier(ctx); err != nil {
		return "", nodeData{}, nil, err
	}
	dir := l.dir(name)
	kids, err := l.children(ctx, dir)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return "", nodeData{}, nil, notHeld
	case err != nil:
		return "", nodeData{}, nil, err
	}
	for _, k := range kids[:holding(kids)] {
		path := dir + "/" + k.name
		d, stat, err := l.readData(ctx, path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return "", nodeData{}, nil, errAgain // released meanwhile: look again
		case err != nil:
			return "", nodeData{}, nil, fmt.Errorf("node %s: %w", k.name, err)
		case uint64(stat.Czxid) == token:
			return path, d, stat, nil
		}
	}
	return "", nodeData{}, nil, notHeld
}

// revokedHere ends the lease of m's node at once if this Locker holds it:
// no need to wait for the poll.
func (l *Locker) revokedHere(m marked) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for le := range l.leases {
		if le.path == m.path {
			le.revokedLocked(m.version)
			return
		}
	}
}

// forceAfter waits, in the background, until the node at path is gone, or
// deletes it at forceAt (the end of the grace); the channel gets the
// outcome. Close ends the wait.
func (l *Locker) forceAfter(path string, forceAt time.Time) <-chan error {
	done := make(chan error, 1)
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		done <- l.awaitGone(l.base, path, forceAt)
	}()
	return done
}

// awaitGone waits until the node at path is gone (a watch on it, shared
// with this Locker's waiters). If forceAt is set and passes first, it
// deletes the node.
func (l *Locker) awaitGone(ctx context.Context, path string, forceAt time.Time) error {
	return retry(ctx, func() error {
		var force <-chan time.Time
		if !forceAt.IsZero() {
			if !time.Now().Before(forceAt) {
				return l.forceDelete(ctx, path)
			}
			t := time.NewTimer(time.Until(forceAt))
			defer t.Stop()
			force = t.C
		}
		ch, err := l.watch(ctx, path)
		switch {
		case errors.Is(err, errAgain): // gone
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ch:
			return errAgain
		case <-force:
			return l.forceDelete(ctx, path)
		case <-ctx.Done():
			return ctxError(ctx)
		}
	})
}

// forceDelete deletes a revoked node whose holder did not let go within
// the grace.
func (l *Locker) forceDelete(ctx context.Context, path string) error {
	l.log.Info("revoke: the holder did not let go within the grace; deleting its node", "path", path)
	return l.deleteNode(ctx, path)
}
