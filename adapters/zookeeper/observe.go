package zookeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// observeBuffer is how many states an observer's channel holds before it
// collapses them into the latest (DESIGN.md, "The 64-state buffer").
const observeBuffer = 64

// Observe implements lock.Elector: one goroutine of the Locker reads the
// election's head, delivers its state when it changed, watches what can
// change it and reads again when the watch fires (DESIGN.md, "Observe:
// observers watch the head"). It stops, closing the channel, when ctx
// ends or the Locker shuts down.
func (l *Locker) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if err := lock.ValidateName(election); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("zookeeper: observe %q: %w", election, lock.ErrClosed)
	}
	l.bg.Add(1) // before closed is set: Shutdown waits for it
	l.mu.Unlock()
	octx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(l.base, func() { cancel(lock.ErrClosed) })
	out := make(chan lock.LeaderInfo, observeBuffer)
	go func() {
		defer l.bg.Done()
		defer close(out)
		defer cancel(nil)
		defer stop()
		l.observe(octx, election, out)
	}()
	return out, nil
}

// observe is the observer's loop: read the seat (and deliver it if it
// changed); if the watch it needs was armed before that read, wait for
// it; else arm it and read again, since the seat may have changed between
// the read and the watch.
func (l *Locker) observe(ctx context.Context, election string, out chan lock.LeaderInfo) {
	var (
		last  *lock.LeaderInfo // the state delivered last
		armed watchKey
		ch    <-chan zk.Event // armed's channel; nil: none armed
	)
	bo := leasecore.Backoff{Min: retryMin, Max: retryMax}
	for {
		var s seat
		err := retry(ctx, func() (err error) {
			s, err = l.readSeat(ctx, election)
			if err != nil || (last != nil && sameState(s.info, *last)) {
				return err
			}
			if s.info.Elected() { // Since: the server's time, by a barrier
				now, err := l.barrier(ctx)
				if err != nil {
					return err
				}
				s.info.Since = since(now, s.granted)
			}
			deliver(out, s.info)
			last = &s.info
			return nil
		})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil: // not a connection-level failure, which retry retries
			l.log.Debug("observe: reading the election failed", "election", election, "error", err)
			if bo.Wait(ctx) != nil {
				return
			}
			continue
		case ch != nil && armed == s.want:
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
			ch = nil
			continue
		}
		armed, ch, err = l.armSeat(ctx, s.want)
		if err != nil {
			ch = nil // errAgain: the node went; else back off, then read again
			if !errors.Is(err, errAgain) && bo.Wait(ctx) != nil {
				return
			}
		}
	}
}

// seat is what one read of an election tells an observer: its state
// (empty: Token 0), the head's grant time (server ms, for Since) and the
// watch that fires when the state may change.
type seat struct {
	info    lock.LeaderInfo
	granted int64
	want    watchKey
}

// readSeat reads election's head: the state is the head's if it is an
// election's claim, else the empty seat (no claim, no directory, or a
// head of another type); the watch is on the head's data, on the
// directory's children when there is no head, or on the directory's
// creation when there is no directory.
func (l *Locker) readSeat(ctx context.Context, election string) (seat, error) {
	l.seatReads.Add(1)
	dir := l.dir(election)
	kids, d, stat, err := l.head(ctx, dir)
	s := seat{info: lock.LeaderInfo{Election: election}, want: watchKey{watchChildren, dir}}
	switch {
	case errors.Is(err, errNoDir):
		s.want.kind = watchExists
		return s, nil
	case len(kids) == 0: // no claim (or the listing failed)
		return s, err
	}
	s.want = watchKey{watchData, dir + "/" + kids[0].name}
	switch {
	case kids[0].typ != typeElection: // by its name
		return s, nil // the seat is empty until the head is an election's claim
	case errors.Is(err, errBadData):
		return s, nil // no record to read a state from: the empty seat
	case err != nil:
		return s, err
	}
	s.info = leaderInfo(election, d, stat, 0)
	s.granted = grantTime(d, stat)
	return s, nil
}

// armSeat sets (or shares) the watch k and returns it. errAgain: the
// node changed meanwhile (went, or, for an exists watch, was created):
// read again.
func (l *Locker) armSeat(ctx context.Context, k watchKey) (watchKey, <-chan zk.Event, error) {
	ch, err := l.watchOn(ctx, k)
	return k, ch, err
}

// sameState reports whether a and b show the same state: a refresh or
// the prober's grant-time stamp changes the head's data, not the state.
func sameState(a, b lock.LeaderInfo) bool {
	return a.Token == b.Token && a.Value == b.Value && a.Holder == b.Holder
}

// deliver puts info on out without blocking: only the observer sends on
// out, so when it is full it takes every state still buffered and sends
// info in their place, counting them (and what they had replaced) in
// Skipped.
func deliver(out chan lock.LeaderInfo, info lock.LeaderInfo) {
	if len(out) == cap(out) {
	drain:
		for {
			select {
			case old := <-out:
				info.Skipped += 1 + old.Skipped
			default:
				break drain
			}
		}
	}
	out <- info
}
