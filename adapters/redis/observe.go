package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// observeBuffer is how many undelivered states an observer keeps before
// it collapses them to the latest (lock/DESIGN.md, "Elector").
const observeBuffer = 64

// Observe implements lock.Elector (DESIGN.md, "Observe"): it subscribes,
// waits for the confirmation and reads the first state before it returns
// (bounded by opTimeout; a store that does not answer fails it with an
// error wrapping lock.ErrNoQuorum), then one goroutine with that
// subscription delivers the states, counted as a call in progress until it
// ends (ctx, Shutdown).
func (c *instance) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if err := c.openInspect(election); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		c.leave()
		return nil, fmt.Errorf("redis lock: observe %q: %w", election, err)
	}
	o := &observer{c: c, name: election, out: make(chan lock.LeaderInfo),
		channel: c.keys(election)[1], marker: c.cfg.Prefix + "observe:" + c.newClaim()}
	ps, err := o.start(ctx)
	if err != nil {
		c.leave()
		return nil, err
	}
	go o.run(ctx, ps)
	return o.out, nil
}

// observer is one Observe.
type observer struct {
	c       *instance
	name    string
	channel string // the election's: every change is published there
	marker  string // this observer's: its reads publish their state there
	out     chan lock.LeaderInfo
	pending []lock.LeaderInfo // undelivered states, oldest first
	latest  seat              // the last state in the store's order taken in
	shown   seat              // the last state queued for delivery
	started bool              // whether a state was taken in yet
	gap     bool              // resubscribed: messages may have been lost until the next marker
}

// start subscribes to the election's channel and the observer's marker
// channel on one connection, waits for both confirmations and reads the
// first state, which it queues: a change published after the read comes
// after it on that connection, so none is lost.
func (o *observer) start(ctx context.Context) (*goredis.PubSub, error) {
	c := o.c
	callCtx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	defer context.AfterFunc(c.haltCtx, cancel)()
	ps := c.rdb.Subscribe(ctx) // no channel yet: no I/O
	err := ps.Subscribe(callCtx, o.channel, o.marker)
	for confirmed := 0; err == nil && confirmed < 2; {
		left := time.Until(deadlineOf(callCtx))
		if err = callCtx.Err(); err == nil && left <= 0 {
			err = context.DeadlineExceeded
		}
		if err != nil {
			break
		}
		var m any
		// ReceiveTimeout, not Receive(callCtx): the PubSub keeps the
		// context of its first receive for good.
		m, err = ps.ReceiveTimeout(ctx, left)
		if s, ok := m.(*goredis.Subscription); ok && s.Kind == "subscribe" {
			confirmed++
		}
	}
	var s seat
	if err == nil {
		s, _, err = c.readSeat(callCtx, o.name, o.marker)
	}
	if err != nil {
		_ = ps.Close()
		return nil, c.cutErr(ctx, "observe", o.name, err)
	}
	o.take(s, 0)
	return ps, nil
}

// deadlineOf is ctx's deadline (every caller's ctx has one).
func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// run delivers states until ctx ends or Shutdown begins. It reads the
// state again on every later subscription confirmation (go-redis
// reconnected and resubscribed), at a term's PTTL + 1 ms (an expiry
// publishes nothing), and after a failed read on a backoff; a read's state
// is taken in when its marker arrives (atMarker), in its place among the
// election's messages.
func (o *observer) run(ctx context.Context, ps *goredis.PubSub) {
	c := o.c
	defer c.leave()
	defer close(o.out)
	defer func() { _ = ps.Close() }()
	msgs := ps.ChannelWithSubscriptions()
	look := time.NewTimer(expiry(o.latest)) // when to read the state
	defer look.Stop()
	bo := leasecore.Backoff{Min: minRetry, Max: c.retryCap}
	for {
		var send chan<- lock.LeaderInfo // nil (no send) while nothing is pending
		var next lock.LeaderInfo
		if len(o.pending) > 0 {
			send, next = o.out, o.pending[0]
		}
		var wait time.Duration = -1 // -1: keep the timer as it is
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case send <- next:
			o.pending = o.pending[1:]
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *goredis.Subscription:
				if m.Kind == "subscribe" && m.Channel == o.channel {
					o.gap = true
					wait = o.read(ctx, &bo)
				}
			case *goredis.Message:
				wait = o.message(m)
			}
		case <-look.C:
			wait = o.read(ctx, &bo)
		}
		if wait >= 0 {
			look.Reset(wait)
		}
	}
}

// read runs leaderScript, which publishes the state on the marker
// channel; it returns when to read again (the read state's expiry, or
// the backoff after a failure).
func (o *observer) read(ctx context.Context, bo *leasecore.Backoff) time.Duration {
	callCtx, cancel := context.WithTimeout(ctx, o.c.opTimeout)
	defer cancel()
	defer context.AfterFunc(o.c.haltCtx, cancel)() // a Shutdown whose ctx ended
	s, _, err := o.c.readSeat(callCtx, o.name, o.marker)
	if err != nil {
		o.c.log.Debug("redis lock: observe: reading the state failed", "name", o.name, "error", err)
		return bo.Next()
	}
	bo.Reset()
	return expiry(s)
}

// message takes in a message of the election's channel or a marker, and
// returns when to read again (-1: as before).
func (o *observer) message(m *goredis.Message) time.Duration {
	s, err := parseSeat(o.name, m.Payload)
	if err != nil {
		o.c.log.Debug("redis lock: observe: an unreadable message", "name", o.name, "error", err)
		return -1
	}
	if m.Channel == o.marker {
		return o.atMarker(s)
	}
	if !s.after(o.latest) { // published before a read already taken in
		return -1
	}
	o.take(s, 0)
	return expiry(s)
}

// atMarker takes in the state s of a read at its marker: every message
// published before the read has been taken in, so s is after the latest
// only if some changes published nothing (an expiry) or their messages
// were lost while disconnected (gap). Then s replaces the states between:
// Skipped counts them when the count is known (a term's own changes, by
// ver), else, after a gap, is 1 (at least one may be lost). An s before
// the latest means the store was reset (tokens restarted): s is the truth.
func (o *observer) atMarker(s seat) time.Duration {
	gap := o.gap
	o.gap = false
	switch {
	case s.after(o.latest):
		o.take(s, lost(o.latest, s, gap))
	case o.latest.after(s):
		o.take(s, 0)
	}
	return expiry(o.latest)
}

// lost is how many states came between from and to when their messages
// may have been lost (gap) or none was published (an expiry).
func lost(from, to seat, gap bool) int {
	if from.Elected() && to.Elected() && from.Token == to.Token {
		return int(to.ver - from.ver - 1) // every change of a term bumps ver
	}
	if gap {
		return 1
	}
	return 0 // no message lost: the term expired, unannounced
}

// expiry is when to look at the state s again: 1 ms after its term's
// expiry in the store, or never (an hour) for the empty seat, whose
// changes all run a script, and for a term without an expiry (PTTL −1:
// not one this adapter wrote).
func expiry(s seat) time.Duration {
	if !s.Elected() || s.pttl < 0 {
		return time.Hour
	}
	return s.pttl + time.Millisecond
}

// take makes s the latest state and queues it if a reader sees it differ
// from the last one queued (a revoke changes ver but nothing shown), with
// skipped states replaced before it.
func (o *observer) take(s seat, skipped int) {
	o.latest = s
	if o.started && s.same(o.shown) {
		return
	}
	o.shown, o.started = s, true
	o.queue(s.LeaderInfo, skipped)
}

// queue adds info to the states to deliver; a full buffer collapses to
// info, which counts the states it replaced in Skipped.
func (o *observer) queue(info lock.LeaderInfo, skipped int) {
	info.Skipped = skipped
	if len(o.pending) == observeBuffer {
		for _, p := range o.pending {
			info.Skipped += 1 + p.Skipped
		}
		o.pending = o.pending[:0]
	}
	o.pending = append(o.pending, info)
}
