package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/lock"
)

// Inspect implements lock.Locker: sync, list, and read the lowest child.
func (l *Locker) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	opCtx, end, err := l.begin(ctx)
	if err != nil {
		return lock.Info{}, fmt.Errorf("zookeeper: inspect %q: %w", name, err)
	}
	defer end()
	info, err := l.inspect(opCtx, name)
	if err != nil {
		return lock.Info{}, l.fail(ctx, opCtx, fmt.Sprintf("inspect %q", name), err)
	}
	return info, nil
}

// inspect is one barrier, one listing and one read of the lowest child; a
// connection-level failure restarts it from the barrier.
func (l *Locker) inspect(ctx context.Context, name string) (lock.Info, error) {
	dir := l.dir(name)
	info := lock.Info{Name: name}
	err := retry(ctx, func() error {
		if err := l.barrier(ctx); err != nil {
			return err
		}
		kids, err := l.children(ctx, dir)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil
		case err != nil:
			return err
		case len(kids) == 0:
			return nil
		}
		var (
			data []byte
			stat *zk.Stat
		)
		err = l.call(ctx, ackNone, func() (err error) { data, stat, err = l.conn.Get(dir + "/" + kids[0].name); return err }, nil)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return errAgain // released meanwhile: look again
		case err != nil:
			return err
		}
		d, err := decodeData(data)
		if err != nil {
			return fmt.Errorf("node %s: %w", kids[0].name, err)
		}
		info.Held, info.Token, info.Owner, info.Waiters = true, uint64(stat.Czxid), d.owner, len(kids)-1
		if d.ttl > 0 {
			left := d.ttl - time.Duration(time.Now().UnixMilli()-stat.Mtime)*time.Millisecond
			info.ExpiresIn = min(max(left, time.Nanosecond), d.ttl)
		}
		return nil
	})
	return info, err
}

// barrier makes the reads that follow on this session see every write that
// completed before it was called. A sync is not enough: a server that is
// the leader answers a sync at once, before it has applied every
// committed write to its own tree. So barrier makes a write of its own (a
// multi with one version check of the root, which changes nothing): it
// is ordered after every completed write, and the session's reads after
// its reply see at least its state.
func (l *Locker) barrier(ctx context.Context) error {
	check := func() error {
		_, err := l.conn.Multi(&zk.CheckVersionRequest{Path: l.cfg.Root, Version: -1})
		return err
	}
	err := l.call(ctx, ackQuorum, check, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err := l.ensureRoot(ctx); err != nil {
			return err
		}
		err = l.call(ctx, ackQuorum, check, nil)
	}
	return err
}
