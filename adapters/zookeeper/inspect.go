package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Inspect implements lock.Locker: a barrier, a listing, and a read of the
// lowest child and of the first waiters (lock.WithQueueLimit).
func (l *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return lock.Info{}, fmt.Errorf("zookeeper: inspect %q: %w", name, err)
	}
	defer end()
	var info lock.Info
	err = retry(opCtx, func() error {
		now, err := l.barrier(opCtx)
		if err != nil {
			return err
		}
		info, err = l.describe(opCtx, name, now, o.QueueLimit)
		return err
	})
	if err != nil {
		return lock.Info{}, l.fail(ctx, opCtx, fmt.Sprintf("inspect %q", name), err)
	}
	return info, nil
}

// describe is the Info of name as this session's server sees it, with at
// most queue waiters (the children behind the holders, holding); the
// top-level fields describe the lowest child, the oldest holder, and
// Holders every holder, for every type but a mutex; now is the server's
// time (Unix ms, from a barrier), against which its durations are
// measured (DESIGN.md, "Durations on the server's clock"). One listing,
// one read of the lowest child (listing again if it went meanwhile), one
// read per other holder and one per reported waiter.
func (l *Locker) describe(ctx context.Context, name string, now int64, queue int) (lock.Info, error) {
	dir := l.dir(name)
	kids, d, stat, err := l.head(ctx, dir)
	switch {
	case errors.Is(err, errNoDir):
		return lock.Info{Name: name}, nil
	case err != nil:
		return lock.Info{}, err
	case len(kids) == 0:
		return lock.Info{Name: name}, nil
	}
	held := holding(kids) // the head and, for a semaphore or readers, more
	first := holderOf(kids[0], d, stat, now)
	info := lock.Info{
		Name:      name,
		Held:      true,
		Token:     first.Token,
		Owner:     first.Owner,
		Waiters:   len(kids) - held,
		Kind:      first.Kind,
		ExpiresIn: first.ExpiresIn,
		Since:     first.Since,
		Holder:    first.Holder,
		Node:      first.Node,
	}
	info.Type, info.Limit = typeInfo(kids[0].typ)
	if info.Type != lock.TypeMutex && info.Type != lock.TypeNone {
		info.Holders, err = l.holders(ctx, dir, kids[1:held], first, now)
		if err != nil {
			return lock.Info{}, err
		}
	}
	info.Queue, err = l.waiters(ctx, dir, kids[held:min(len(kids), held+queue)], now)
	return info, err
}

// typeInfo is Info's Type and Limit of a name whose lowest child is of
// type t (TypeNone for a type this version does not know).
func typeInfo(t nameType) (lock.Type, int) {
	switch t.family {
	case famMutex:
		return lock.TypeMutex, 0
	case famElection:
		return lock.TypeElection, 0
	case famSemaphore:
		return lock.TypeSemaphore, t.limit
	case famRW:
		return lock.TypeReadWrite, 0
	}
	return lock.TypeNone, 0
}

// holders is Info.Holders: first (the lowest child's), then the other
// holders' nodes, read in order; one that went meanwhile is left out.
func (l *Locker) holders(ctx context.Context, dir string, kids []child, first lock.Holder, now int64) ([]lock.Holder, error) {
	out := []lock.Holder{first}
	err := l.readEach(ctx, dir, kids, func(k child, d nodeData, stat *zk.Stat) {
		out = append(out, holderOf(k, d, stat, now))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readEach reads the nodes of kids in order and passes each to fn; one
// that went meanwhile is left out.
func (l *Locker) readEach(ctx context.Context, dir string, kids []child, fn func(k child, d nodeData, stat *zk.Stat)) error {
	for _, k := range kids {
		d, stat, err := l.readData(ctx, dir+"/"+k.name)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue
		case err != nil:
			return fmt.Errorf("node %s: %w", k.name, err)
		}
		fn(k, d, stat)
	}
	return nil
}

// holderOf is the holder child k, with record d and stat, as Inspect
// reports it. A permit admitted whose grant has not written its slot yet
// shows slot 0.
func holderOf(k child, d nodeData, stat *zk.Stat, now int64) lock.Holder {
	h := lock.Holder{
		Token:  uint64(stat.Czxid),
		Owner:  d.owner,
		Kind:   lock.KindSession,
		Since:  since(now, grantTime(d, stat)),
		Holder: holderID(d, stat),
		Node:   d.node,
		Mode:   modeOf(k),
		Slot:   int(d.slot),
	}
	if k.typ == typeElection {
		h.Value = d.owner
	}
	if d.ttl > 0 {
		h.Kind = lock.KindTTL
		h.ExpiresIn = min(max(d.ttl-since(now, stat.Mtime), time.Nanosecond), d.ttl)
	}
	return h
}

// modeOf is the mode of a read-write lock's child; ModeNone for the
// other types.
func modeOf(k child) lock.Mode {
	switch {
	case k.typ != typeRW:
		return lock.ModeNone
	case k.write:
		return lock.ModeWrite
	}
	return lock.ModeRead
}

// errNoDir: a lock's directory does not exist (never made, or reaped).
var errNoDir = errors.New("zookeeper: no directory")

// head lists dir and reads its lowest child, listing again if that child
// went meanwhile. With no claim kids is empty; with no directory head
// answers errNoDir. A record
// that does not decode answers an error wrapping errBadData, with kids.
func (l *Locker) head(ctx context.Context, dir string) (kids []child, d nodeData, stat *zk.Stat, err error) {
	for {
		kids, err = l.children(ctx, dir)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil, nodeData{}, nil, errNoDir
		case err != nil || len(kids) == 0:
			return nil, nodeData{}, nil, err
		}
		d, stat, err = l.readData(ctx, dir+"/"+kids[0].name)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // released meanwhile: look again
		case err != nil:
			return kids, nodeData{}, nil, fmt.Errorf("node %s: %w", kids[0].name, err)
		}
		return kids, d, stat, nil
	}
}

// waiters reads the waiters' nodes, in order; one that went meanwhile is
// left out.
func (l *Locker) waiters(ctx context.Context, dir string, kids []child, now int64) ([]lock.Waiter, error) {
	var out []lock.Waiter
	err := l.readEach(ctx, dir, kids, func(k child, d nodeData, stat *zk.Stat) {
		out = append(out, lock.Waiter{Holder: holderID(d, stat), Node: d.node, Owner: d.owner, Waited: since(now, stat.Ctime), Mode: modeOf(k)})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// grantTime is when the claim of d and stat became a lease, on the
// server's clock (Unix ms): the recorded grant time; else the mtime of a
// TTL lease whose grant was its last write; else its ctime (exact for a
// claim that did not wait).
func grantTime(d nodeData, stat *zk.Stat) int64 {
	switch {
	case d.granted != 0:
		return d.granted
	case d.ttl > 0 && d.state == stateGranted:
		return stat.Mtime
	}
	return stat.Ctime
}

// since is now − t, two server timestamps in Unix ms, as a duration; 0 if
// negative (two leaders' clocks).
func since(now, t int64) time.Duration {
	return time.Duration(max(now-t, 0)) * time.Millisecond
}

// holderID is the Holder of a claim: its Locker's ID; for a format-1
// record, what the node tells: the session of an ephemeral node.
func holderID(d nodeData, stat *zk.Stat) string {
	switch {
	case d.holder != "":
		return d.holder
	case d.format == formatV1 && d.ttl == 0 && stat.EphemeralOwner != 0:
		return fmt.Sprintf("session-%x", stat.EphemeralOwner)
	}
	return ""
}

// barrier makes the reads that follow on this session see every write that
// completed before it was called, and returns the server's time (Unix ms).
// A sync is not enough: a server that is the leader answers a sync at
// once, before it has applied every committed write to its own tree. So
// barrier makes a write of its own, a SetData of the root (any version,
// empty data; nothing reads the root's data): it is ordered after every
// completed write, the session's reads after its reply see at least its
// state, and its reply's mtime is the leader's time of the write.
func (l *Locker) barrier(ctx context.Context) (int64, error) {
	stat, err := l.touchRoot(ctx)
	if err != nil {
		return 0, err
	}
	return stat.Mtime, nil
}

// touchRoot is the barrier's write, creating the root if it is missing;
// its Stat has the write's zxid (Mzxid) and time (Mtime).
func (l *Locker) touchRoot(ctx context.Context) (*zk.Stat, error) {
	set := func() (*zk.Stat, error) { return l.conn.Set(l.cfg.Root, []byte{}, -1) }
	stat, err := callFor(ctx, l, 0, ackQuorum, set, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err := l.ensureRoot(ctx); err != nil {
			return nil, err
		}
		stat, err = callFor(ctx, l, 0, ackQuorum, set, nil)
	}
	return stat, err
}
