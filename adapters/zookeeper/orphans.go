package zookeeper

import (
	"context"
	"errors"

	"github.com/go-zookeeper/zk"
)

// orphan is a node to delete in the background: path, or every child of
// dir carrying guid when the path is unknown. session is the session an
// ephemeral node belongs to (0: not ephemeral or unknown). A TTL node can
// be adopted by another Locker, so it is checked: deleted only while it is
// still ours (deleteMine, from version on with adoptions; version -1:
// look first).
type orphan struct {
	path      string
	dir       string
	guid      string
	session   int64
	checked   bool
	version   int32
	adoptions uint32
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
		return l.deleteOrphanNode(ctx, o, o.path, o.version) == nil
	}
	var kids []child
	err := retry(ctx, func() (err error) { kids, err = l.children(ctx, o.dir); return err })
	if err != nil {
		return errors.Is(err, zk.ErrNoNode)
	}
	gone := true
	for _, k := range kids {
		if k.guid == o.guid {
			gone = l.deleteOrphanNode(ctx, o, o.dir+"/"+k.name, -1) == nil && gone
		}
	}
	return gone
}

// deleteOrphanNode deletes path, one node of o: checked (only if ours, see
// orphan) or not.
func (l *Locker) deleteOrphanNode(ctx context.Context, o orphan, path string, version int32) error {
	if !o.checked {
		return l.deleteNode(ctx, path)
	}
	_, err := l.deleteMine(ctx, ownNode{path: path, version: version, adoptions: o.adoptions})
	return err
}
