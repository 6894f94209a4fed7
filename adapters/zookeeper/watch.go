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

// watch returns a channel that fires when pred's node changes or is
// deleted, sharing an armed watch if there is one. It returns errAgain if
// pred is gone already (list again at once: waiting would be the classic
// recipe's deadlock).
func (l *Locker) watch(ctx context.Context, pred string) (<-chan zk.Event, error) {
	l.mu.Lock()
	ch, ok := l.watches[pred]
	if ok && fired(ch) {
		delete(l.watches, pred)
		ok = false
	}
	l.mu.Unlock()
	if ok {
		return ch, nil
	}
	// The watch is recorded in the call's goroutine, so that one set by a
	// wait that gave up while the request was in flight is shared too.
	ch, err := callFor(ctx, l, 0, ackNone, func() (<-chan zk.Event, error) {
		_, _, wch, err := l.conn.GetW(pred)
		if err == nil {
			l.mu.Lock()
			if old, ok := l.watches[pred]; !ok || fired(old) {
				l.watches[pred] = wch
			}
			l.mu.Unlock()
		}
		return wch, err
	}, nil)
	switch {
	case errors.Is(err, zk.ErrNoNode):
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
	for path, ch := range l.watches {
		if fired(ch) {
			delete(l.watches, path)
		}
	}
}
