package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// create makes the claim's node (protected creation, see DESIGN.md),
// creating the directory if needed. A create that failed at the connection
// level is ambiguous: the server may have applied it. The claim then looks
// for a node carrying its GUID before it creates again, and is marked
// ambiguous, so that giving up deletes every node with its GUID.
func (l *Locker) create(ctx context.Context, c *claim) error {
	first := time.Now()
	err := retry(ctx, func() error {
		if c.ambiguous { // an earlier attempt may have created a node we never saw
			found, err := l.recoverCreate(ctx, c)
			switch {
			case err != nil:
				return err
			case found:
				c.marked = first
				return nil
			}
		}
		err := l.createOnce(ctx, c)
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrNoNode): // no directory yet, or reaped
			if err := l.ensureDir(ctx, c.dir); err != nil {
				return err
			}
			return errAgain
		case isUnimplemented(err):
			return fmt.Errorf("%w: %w", ErrTTLUnsupported, err)
		case retryable(err):
			c.ambiguous = true // the next attempt looks for its node first
			l.log.Debug("create failed ambiguously; looking for its node", "name", c.name, "error", err)
			return err
		default:
			return err
		}
		c.marked = first
		return nil
	})
	if err != nil && c.ambiguous {
		l.addOrphan(orphan{dir: c.dir, guid: c.guid, checked: c.ttl > 0})
	}
	return err
}

// createOnce sends one create of the claim's node and, on success, records
// its path and (for an ephemeral node) the session it was created on. If
// ctx ends while the create is in flight it waits a little for the reply:
// the node may exist already, and Acquire must delete it before it
// returns. A reply that comes later still is left to abandonedCreate.
func (l *Locker) createOnce(ctx context.Context, c *claim) error {
	prefix := c.dir + "/" + protectedPrefix + c.guid + lockMarker
	before := l.conn.SessionID()
	data := encodeData(c.meta)
	ttl := c.ttl
	path, err := callFor(ctx, l, l.cleanupTimeout(), ackQuorum, func() (string, error) {
		if ttl > 0 {
			return l.conn.CreateTTL(prefix, data, zk.FlagPersistentSequentialWithTTL, l.cfg.ACL, ttl)
		}
		return l.conn.Create(prefix, data, zk.FlagEphemeralSequential, l.cfg.ACL)
	}, func(path string, err error) { l.abandonedCreate(c, path, before, err) })
	if err != nil {
		return err
	}
	c.path, c.version = path, 0
	if after := l.conn.SessionID(); after == before {
		c.sess = before
	}
	if c.ttl > 0 {
		c.sess = 0
	}
	return nil
}

// abandonedCreate cleans up after a create whose caller stopped waiting.
func (l *Locker) abandonedCreate(c *claim, path string, sess int64, err error) {
	switch {
	case err == nil:
		if c.ttl > 0 {
			sess = 0
		}
		o := orphan{path: path, session: sess, checked: c.ttl > 0}
		ctx, cancel := context.WithTimeout(l.stopped, l.cleanupTimeout())
		defer cancel()
		if !l.deleteOrphan(ctx, o) {
			l.addOrphan(o)
		}
	case retryable(err):
		l.addOrphan(orphan{dir: c.dir, guid: c.guid, checked: c.ttl > 0})
	}
}

// isUnimplemented reports ZooKeeper's UNIMPLEMENTED (-6), which go-zookeeper
// has no error value for: a TTL create on a server without extended types.
func isUnimplemented(err error) bool {
	return err != nil && strings.HasSuffix(err.Error(), "unknown error: -6")
}

// recoverCreate looks for the node of a create whose reply was lost: a
// child carrying the claim's GUID. It adopts the lowest such node and
// leaves any others to the orphans.
func (l *Locker) recoverCreate(ctx context.Context, c *claim) (bool, error) {
	kids, err := l.children(ctx, c.dir)
	if errors.Is(err, zk.ErrNoNode) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	found := false
	for _, k := range kids {
		if k.guid != c.guid {
			continue
		}
		if !found {
			found = true
			c.path = c.dir + "/" + k.name
			c.sess, c.version = 0, 0 // sess unknown: checked at the grant
			continue
		}
		l.addOrphan(orphan{path: c.dir + "/" + k.name, checked: c.ttl > 0, version: -1})
	}
	if found {
		l.log.Debug("recovered the node of a create whose reply was lost", "path", c.path)
	}
	return found, nil
}

// ensureDir creates the lock directory (a container) and the root above it.
func (l *Locker) ensureDir(ctx context.Context, dir string) error {
	return retry(ctx, func() error {
		err := l.call(ctx, ackQuorum, func() error {
			_, err := l.conn.CreateContainer(dir, nil, zk.FlagContainer, l.cfg.ACL)
			return err
		})
		switch {
		case err == nil || errors.Is(err, zk.ErrNodeExists):
			return nil
		case errors.Is(err, zk.ErrNoNode): // no root yet
			if err := l.ensureRoot(ctx); err != nil {
				return err
			}
			return errAgain
		}
		return err
	})
}

// ensureRoot creates the root's path, one persistent node at a time (one
// attempt each).
func (l *Locker) ensureRoot(ctx context.Context) error {
	parts := strings.Split(l.cfg.Root[1:], "/")
	for i := range parts {
		p := "/" + strings.Join(parts[:i+1], "/")
		err := l.call(ctx, ackQuorum, func() error {
			_, err := l.conn.Create(p, nil, zk.FlagPersistent, l.cfg.ACL)
			return err
		})
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}
