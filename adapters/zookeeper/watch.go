package zookeeper

import (
	"context"
	"errors"

	"github.com/go-zookeeper/zk"
)

// Watches. go-zookeeper cannot remove a watch (it has no RemoveWatches):
// a watch stays registered, client and server side, until its node
// changes or the session ends, even after the waiter that set it gave up.
// So the Locker shares them: at most one armed watch per watched path
// (l.watches), which every waiter of this Locker with that predecessor
// waits on. A cancelled wait leaves at most that one watch, which goes when
// the predecessor's node changes; as every claim node is deleted in the end
// (released, withdrawn, its session or TTL ended), the watches left are
// bounded by the claim nodes that exist, not by the waits that were
// cancelled. Watches are set with GetW, which registers nothing for a node
// that does not exist (ExistsW would leave a creation watch on a path that
// never comes back).

// watchKind is what a watch is set for. A waiter watches its
// predecessor's data; an observer of an election the head's data, or,
// with no head, the directory's children, or, with no directory, its
// creation (DESIGN.md, "Observe: observers watch the head").
type watchKind uint8

const (
	watchData     watchKind = iota // GetW: the node's data changes or it is deleted
	watchChildren                  // ChildrenW: a child is created or deleted, or the node is deleted
	watchExists                    // ExistsW: the node is created, changed or deleted
)

// watchKey names one shared watch.
type watchKey struct {
	kind watchKind
	path string
}

// set sets k's watch with one go-zookeeper call.
func (k watchKey) set(conn *zk.Conn) (<-chan zk.Event, error) {
	var (
		ch  <-chan zk.Event
		err error
	)
	switch k.kind {
	case watchChildren:
		_, _, ch, err = conn.ChildrenW(k.path)
	case watchExists:
		var ok bool
		ok, _, ch, err = conn.ExistsW(k.path)
		if err == nil && ok {
			err = errExists // it waits for the node's next change, not its creation
		}
	default:
		_, _, ch, err = conn.GetW(k.path)
	}
	return ch, err
}

// watch returns a channel that fires when pred's node changes or is
// deleted, sharing an armed watch if there is one. It returns errAgain if
// pred is gone already (list again at once: waiting would be the classic
// recipe's deadlock).
func (l *Locker) watch(ctx context.Context, pred string) (<-chan zk.Event, error) {
	return l.watchOn(ctx, watchKey{watchData, pred})
}

// errExists: an exists watch found its node, so it is not the creation
// watch that was asked for. It is not recorded (nobody shares it); it
// stays registered until the node changes or goes.
var errExists = errors.New("zookeeper: the node exists")

// watchOn returns a channel that fires when k's watch does, sharing an
// armed watch if there is one. A data or children watch on a node that
// does not exist answers errAgain, and so does an exists watch on one
// that does.
func (l *Locker) watchOn(ctx context.Context, k watchKey) (<-chan zk.Event, error) {
	l.mu.Lock()
	ch, ok := l.watches[k]
	if ok && fired(ch) {
		delete(l.watches, k)
		ok = false
	}
	l.mu.Unlock()
	if ok {
		return ch, nil
	}
	// The watch is recorded in the call's goroutine, so that one set by a
	// wait that gave up while the request was in flight is shared too.
	ch, err := callFor(ctx, l, 0, ackNone, func() (<-chan zk.Event, error) {
		wch, err := k.set(l.conn)
		if err == nil {
			l.mu.Lock()
			if old, ok := l.watches[k]; !ok || fired(old) {
				l.watches[k] = wch
			}
			l.mu.Unlock()
		}
		return wch, err
	}, nil)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, errExists):
		return nil, errAgain
	case err != nil:
		return nil, err
	}
	return ch, nil
}

// fired reports whether a watch channel has delivered its event. A
// channel fires once: go-zookeeper sends one event and closes it, so a
// waiter that misses the event (taken here or by another waiter) still
// wakes on the close.
func fired(ch <-chan zk.Event) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pruneWatches forgets watches that have fired with nobody waiting.
func (l *Locker) pruneWatches() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, ch := range l.watches {
		if fired(ch) {
			delete(l.watches, k)
		}
	}
}
