package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// election is the name every replica campaigns on.
const election = "election/demo"

// replica is one process of the replicated service: its embedded node
// (replica ri runs node ni), a Locker of that node (its session), a candidate that
// campaigns for leadership again and again, and an observer that reports
// who leads. Killing the replica is killing its node: the Locker, the
// candidate's term and the observer all stop with it.
type replica struct {
	id string

	locker    lock.Locker
	candidate stopper // the campaign loop
	observer  stopper // the Observe loop
}

// stopper is a goroutine and the means to stop it.
type stopper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func goStopper(ctx context.Context, fn func(ctx context.Context)) stopper {
	ctx, cancel := context.WithCancel(ctx)
	s := stopper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		fn(ctx)
	}()
	return s
}

// stop cancels the goroutine and waits for it to return.
func (s stopper) stop() {
	s.cancel()
	<-s.done
}

func replicaID(i int) string { return fmt.Sprintf("r%d", i+1) }

// startReplica opens a Locker on n and starts the replica's candidate and
// observer.
func startReplica(ctx context.Context, i int, n *node.Node, h *history) (*replica, error) {
	l, err := n.NewLocker(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", replicaID(i), err)
	}
	e, ok := l.(lock.Elector)
	if !ok {
		_ = l.Close()
		return nil, fmt.Errorf("%s: the node's Locker is not a lock.Elector", replicaID(i))
	}
	r := &replica{id: replicaID(i), locker: l}
	h.observing(r.id)
	r.observer = goStopper(ctx, func(ctx context.Context) { r.observe(ctx, e, h) })
	r.candidate = goStopper(ctx, func(ctx context.Context) { r.campaign(ctx, e, h) })
	return r, nil
}

// campaign runs for leadership until ctx ends or the Locker closes (its
// node was killed). Elected, the replica proclaims that it serves, then
// serves until its term ends; a term lost (its session expired) or
// resigned (the demo's steering), or a failed Campaign, is followed by
// another Campaign.
func (r *replica) campaign(ctx context.Context, e lock.Elector, h *history) {
	for ctx.Err() == nil {
		value := r.id + " starting"
		err := lock.Lead(ctx, e, election, value, func(ctx context.Context, t lock.Term) error {
			h.elected(r.id, t, value)
			// The work of a leader would start here; the term's token
			// fences what it writes (lock.TokenFromContext(ctx)).
			// A term that ended meanwhile answers ErrNotHeld: nothing to say.
			if err := t.Proclaim(ctx, r.id+" serving"); err != nil && ctx.Err() == nil && !errors.Is(err, lock.ErrNotHeld) {
				h.logf("%s proclaim: %v", r.id, err)
			}
			<-ctx.Done() // until the term ends or the replica stops
			return nil
		})
		switch {
		case ctx.Err() != nil, errors.Is(err, lock.ErrClosed):
			return
		case err != nil && !errors.Is(err, lock.ErrLost) && !errors.Is(err, lock.ErrReleased):
			h.logf("%s campaign: %v", r.id, err)
			select { // back off before the next Campaign
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// observe hands every state of the election that this replica's observer
// delivers to h, until ctx ends or the Locker closes. An Observe that
// fails (no quorum for its first read) is tried again.
func (r *replica) observe(ctx context.Context, e lock.Elector, h *history) {
	for {
		states, err := e.Observe(ctx, election)
		switch {
		case ctx.Err() != nil, errors.Is(err, lock.ErrClosed):
			return
		case err != nil:
			h.logf("%s observe: %v", r.id, err)
			select { // back off before the next Observe
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for info := range states {
			h.observed(r.id, info)
		}
		return // ctx ended, or the Locker or its node closed
	}
}

// stop ends the replica's candidate (resigning a live term) and observer,
// then closes its Locker. After its node was killed it only waits for
// them to notice.
func (r *replica) stop() {
	r.candidate.stop()
	r.observer.stop()
	_ = r.locker.Close()
}
