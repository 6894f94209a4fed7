package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// Observe (DESIGN.md, "Elections, semaphores and read-write locks"): the
// bridge hands each applied entry's events to the node's observers, which
// read the state of every observed name the entry touched and hand it to
// that name's observers if it changed. Per entry, not per batch or event:
// a hand-off (one term's end and the next term's grant in one entry)
// never shows an empty seat, and every replica shows the log's order.

// observeRing is how many states an observer keeps for a reader that has
// not taken them; a full ring collapses to the newest state.
const observeRing = 64

// observers is the node's registry of Observe calls. Lock order:
// bridge.mu → observers.mu → observer.mu.
type observers struct {
	count  atomic.Int64 // registered observers: the hook is free at 0
	wall   func() time.Time
	mu     sync.Mutex
	byName map[string]map[*observer]struct{}
}

func newObservers(wall func() time.Time) *observers {
	return &observers{wall: wall, byName: map[string]map[*observer]struct{}{}}
}

// observer is one Observe call: the states not yet taken by its goroutine.
type observer struct {
	name  string
	wake  chan struct{} // buffered 1: a state was added
	mu    sync.Mutex
	ring  []lock.LeaderInfo
	last  lock.LeaderInfo // the last state offered
	begun bool            // a state was offered
}

// entry runs after the bridge applied one log entry with events evs,
// holding the bridge's write lock (st and a are the state after it). It
// must not block.
func (w *observers) entry(st *fsm.State, a *ages, evs []fsm.Event, now time.Time) {
	if w == nil || len(evs) == 0 || w.count.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var done map[string]bool // names handled in this entry
	for _, ev := range evs {
		obs := w.byName[ev.Name]
		if len(obs) == 0 || done[ev.Name] {
			continue
		}
		if done == nil {
			done = map[string]bool{}
		}
		done[ev.Name] = true
		info := leaderInfo(st.Lock(ev.Name), a, now, w.wall())
		for o := range obs {
			o.offer(info)
		}
	}
}

// restored runs after a snapshot replaced the state, holding the bridge's
// write lock: the entries it covers fired no events, so every observed
// name is read again.
func (w *observers) restored(st *fsm.State, a *ages) {
	if w == nil || w.count.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now, wall := time.Now(), w.wall()
	for name, obs := range w.byName {
		info := leaderInfo(st.Lock(name), a, now, wall)
		for o := range obs {
			o.offer(info)
		}
	}
}

// add registers o and offers it the current state of its name; the
// bridge's read lock held (st and a), so no entry applies between the two.
func (w *observers) add(o *observer, st *fsm.State, a *ages) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byName[o.name] == nil {
		w.byName[o.name] = map[*observer]struct{}{}
	}
	w.byName[o.name][o] = struct{}{}
	w.count.Add(1)
	o.offer(leaderInfo(st.Lock(o.name), a, time.Now(), w.wall()))
}

// remove forgets o.
func (w *observers) remove(o *observer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if obs := w.byName[o.name]; obs != nil {
		if _, ok := obs[o]; ok {
			delete(obs, o)
			w.count.Add(-1)
		}
		if len(obs) == 0 {
			delete(w.byName, o.name)
		}
	}
}

// offer queues info unless it shows what the last state offered showed.
// A full ring collapses to info, whose Skipped counts the states it
// replaced. It never blocks.
func (o *observer) offer(info lock.LeaderInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.begun && info.Token == o.last.Token && info.Value == o.last.Value && info.Holder == o.last.Holder {
		return
	}
	o.begun, o.last = true, info
	if len(o.ring) == observeRing {
		for _, old := range o.ring {
			info.Skipped += 1 + old.Skipped
		}
		o.ring = o.ring[:0]
	}
	o.ring = append(o.ring, info)
	leasecore.Kick(o.wake)
}

// next takes the oldest state queued, if any.
func (o *observer) next() (lock.LeaderInfo, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.ring) == 0 {
		return lock.LeaderInfo{}, false
	}
	info := o.ring[0]
	o.ring = append(o.ring[:0], o.ring[1:]...)
	return info, true
}

// run moves o's states to out, in order, until ctx ends or stop closes.
func (o *observer) run(ctx context.Context, stop <-chan struct{}, out chan<- lock.LeaderInfo) {
	for {
		info, ok := o.next()
		if !ok {
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return
			case <-stop:
				return
			}
		}
		select {
		case out <- info:
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
	}
}

// Observe implements lock.Elector. It waits for a read index from the
// leader (as Leader does), then registers and reads the election's state
// in one step, so the first state is current and no entry falls between
// it and the changes after it. A name of another type shows an empty seat
// until it is an election. A replica cut off from the leader applies
// nothing and so delivers nothing until it applies again. The channel
// closes when ctx ends, the Locker closes or the node stops.
func (c *client) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return nil, err
	}
	if c.isClosed() {
		return nil, lock.ErrClosed
	}
	if err := c.n.readBarrier(ctx); err != nil {
		return nil, fmt.Errorf("observe %q: %w", election, err)
	}
	o := &observer{name: election, wake: make(chan struct{}, 1)}
	c.n.bridge.readAges(func(st *fsm.State, a *ages) { c.n.observers.add(o, st, a) })
	out := make(chan lock.LeaderInfo)
	if !c.background(func() {
		defer close(out)
		defer c.n.observers.remove(o)
		o.run(ctx, c.stop, out)
	}) {
		c.n.observers.remove(o)
		return nil, lock.ErrClosed
	}
	return out, nil
}
