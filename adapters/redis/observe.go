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

// Observe implements lock.Elector (DESIGN.md, "Observe"): one goroutine
// with its own subscription to the election's channel, counted as a call
// in progress until it ends (ctx, Shutdown).
func (c *instance) Observe(ctx context.Context, election string) (<-chan lock.LeaderInfo, error) {
	if err := c.openInspect(election); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		c.leave()
		return nil, fmt.Errorf("redis lock: observe %q: %w", election, err)
	}
	o := &observer{c: c, name: election, out: make(chan lock.LeaderInfo)}
	go o.run(ctx)
	return o.out, nil
}

// observer is one Observe.
type observer struct {
	c       *instance
	name    string
	out     chan lock.LeaderInfo
	pending []lock.LeaderInfo // undelivered states, oldest first
	latest  seat              // the last state queued for delivery
	started bool              // whether a state was queued yet
}

// run subscribes to the election's channel (the name of its lease key)
// and delivers states until ctx ends or Shutdown begins; it reads the
// state on every subscription confirmation (the first, and each after a
// reconnect), at a term's PTTL + 1 ms (an expiry publishes nothing), and
// after a failed read on a backoff.
func (o *observer) run(ctx context.Context) {
	c := o.c
	defer c.leave()
	defer close(o.out)
	ps := c.rdb.Subscribe(ctx) // no channel yet: no I/O
	defer func() { _ = ps.Close() }()
	_ = ps.Subscribe(ctx, c.keys(o.name)[1]) // recorded even if it fails; go-redis reconnects
	msgs := ps.ChannelWithSubscriptions()
	look := time.NewTimer(time.Hour) // when to read the state
	look.Stop()
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
				if m.Kind == "subscribe" {
					wait = o.read(ctx, &bo)
				}
			case *goredis.Message:
				s, err := parseSeat(o.name, m.Payload)
				if err != nil {
					c.log.Debug("redis lock: observe: an unreadable message", "name", o.name, "error", err)
					break
				}
				if s.after(o.latest) {
					o.queue(s)
					wait = expiry(s)
				}
			}
		case <-look.C:
			wait = o.read(ctx, &bo)
		}
		if wait >= 0 {
			look.Reset(wait)
		}
	}
}

// read reads the election's state and queues it if it differs from the
// latest: a read is sent after every message processed so far was
// published, so it is never older than them. It returns when to read
// again (expiry, or the backoff after a failure).
func (o *observer) read(ctx context.Context, bo *leasecore.Backoff) time.Duration {
	callCtx, cancel := context.WithTimeout(ctx, o.c.opTimeout)
	defer cancel()
	defer context.AfterFunc(o.c.haltCtx, cancel)() // a Shutdown whose ctx ended
	s, _, err := o.c.readSeat(callCtx, o.name)
	if err != nil {
		o.c.log.Debug("redis lock: observe: reading the state failed", "name", o.name, "error", err)
		return bo.Next()
	}
	bo.Reset()
	if !o.started || !s.same(o.latest) {
		o.queue(s)
	}
	return expiry(s)
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

// queue adds s to the states to deliver; a full buffer collapses to s,
// which counts the states it replaced in Skipped.
func (o *observer) queue(s seat) {
	o.latest, o.started = s, true
	info := s.LeaderInfo
	if len(o.pending) == observeBuffer {
		for _, p := range o.pending {
			info.Skipped += 1 + p.Skipped
		}
		o.pending = o.pending[:0]
	}
	o.pending = append(o.pending, info)
}
