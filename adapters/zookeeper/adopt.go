package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Adopt implements lock.Adopter (DESIGN.md, "Adopt"): the holder's node of
// name must be a granted TTL node with token as its czxid, not revoked;
// one version-checked SetData makes this Locker its holder and restarts
// its TTL. The lease keeps its token, TTL and owner.
func (l *Locker) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	if err := lock.ValidateName(name); err != nil {
		return nil, err
	}
	if err := lock.ValidateToken(token); err != nil {
		return nil, fmt.Errorf("zookeeper: adopt %q: %w", name, err)
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: adopt %q: %w", name, err)
	}
	defer end()
	var le *lease
	err = retry(opCtx, func() (err error) {
		le, err = l.adopt(opCtx, name, token)
		return err
	})
	if err != nil {
		return nil, l.fail(ctx, opCtx, fmt.Sprintf("adopt %q (token %d)", name, token), err)
	}
	if err := l.unlessClosed(le); err != nil {
		return nil, fmt.Errorf("zookeeper: adopt %q: %w", name, err)
	}
	l.sink.Granted(lock.KindTTL, 0) // an adoption counts as a grant (metrics/DESIGN.md)
	l.mu.Lock()
	d := le.meta
	l.mu.Unlock()
	c, _ := parseChild(path.Base(le.path))
	switch {
	case c.typ == typeElection:
		return term{le}, nil // an election's term stays one: the adopter can Proclaim
	case c.typ.family == famSemaphore && d.slotted:
		return permit{le, int(d.slot)}, nil // a permit stays one, on its slot
	}
	return le, nil
}

// adopt is one attempt of Adopt.
func (l *Locker) adopt(ctx context.Context, name string, token uint64) (*lease, error) {
	path, d, stat, err := l.holderNode(ctx, name, token)
	if err != nil {
		return nil, err
	}
	switch {
	case d.ttl == 0:
		return nil, fmt.Errorf("%w: %q is held by a session lease, which cannot be adopted", lock.ErrNotHeld, name)
	case d.state == stateRevoked:
		return nil, fmt.Errorf("%w: the lease of %q with token %d is revoked", lock.ErrNotHeld, name, token)
	case d.format >= formatV2 && d.state != stateGranted:
		return nil, fmt.Errorf("%w: the claim of %q with token %d is not granted yet", lock.ErrNotHeld, name, token)
	}
	meta := nodeData{
		format:    formatV2,
		ttl:       d.ttl,
		state:     stateGranted,
		granted:   grantTime(d, stat),
		adoptions: d.adoptions + 1,
		timeout:   l.sessionTimeout(),
		holder:    l.id,
		node:      l.cfg.Node,
		owner:     d.owner, // an adopted term stays the leader: its node's name keeps the type
		slotted:   d.slotted,
		slot:      d.slot, // an adopted permit keeps its slot
	}
	sent := time.Now()
	st, err := callFor(ctx, l, 0, ackQuorum, func() (*zk.Stat, error) { return l.conn.Set(path, encodeData(meta), stat.Version) }, nil)
	switch {
	case errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode):
		return nil, errAgain // refreshed, revoked or released meanwhile: look again
	case err != nil:
		return nil, err
	}
	if since(st.Mtime, stat.Mtime) >= d.ttl-ttlMargin(d.ttl) {
		// Not written for its TTL before the adoption: the reaper may have
		// picked it already, and deletes it whatever the adoption wrote.
		if _, err := l.deleteMine(ctx, ownNode{path: path, version: st.Version, adoptions: meta.adoptions}); err != nil {
			l.addOrphan(orphan{path: path, checked: true, version: st.Version, adoptions: meta.adoptions})
		}
		return nil, fmt.Errorf("%w: %w: the lease of %q had not been refreshed for its TTL", lock.ErrNotHeld, lock.ErrExpired, name)
	}
	c := &claim{name: name, dir: l.dir(name), ttl: d.ttl, meta: meta, path: path, version: st.Version, marked: sent}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.newLeaseLocked(c, token, 0), nil
}
