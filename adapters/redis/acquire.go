package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// attempt is the answer of one acquire script.
type attempt struct {
	granted bool
	token   uint64
	pttl    time.Duration // granted: the lease's TTL left; held: the holder's
	held    bool          // a lease holds the name (else free, but a claim is ahead)
	holder  string        // held: the holder's claim
	slot    int           // granted: a permit's slot; -1 for any other lease
	group   bool          // the claim asks for a group's lease (ballot.group)
}

// tryOnce runs acquireScript once for claim in mode m, asking for b.
func (c *instance) tryOnce(ctx context.Context, name, claim string, o lock.Options, m mode, b ballot) (attempt, error) {
	px := c.cfg.leaseTTL(o)
	s := acquireScript
	if b.group() {
		s = groupScript
	}
	// ARGV[4..12]: claim, owner, lease TTL, lease kind, mode, heartbeat TTL, node, type, value.
	v, err := c.run(ctx, s, name, claim, o.Owner, px.Milliseconds(), o.TTL.Milliseconds(), string(m),
		c.cfg.SessionTTL.Milliseconds(), c.cfg.Node, b.typ, b.value)
	if err != nil {
		return attempt{}, err
	}
	if len(v) == 2 && (v[0] == "type" || v[0] == "limit") { // another type, or limit, lives
		live, _ := v[1].(string)
		if v[0] == "limit" {
			return attempt{}, limitErr(live, b.value)
		}
		return attempt{}, typeErr(live, b.typ)
	}
	if len(v) < 3 {
		return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
	}
	n1, ok1 := v[1].(int64)
	n2, ok2 := v[2].(int64)
	switch v[0] {
	case "granted":
		if !ok1 || !ok2 || n1 <= 0 {
			return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
		}
		a := attempt{granted: true, token: uint64(n1), pttl: time.Duration(n2) * time.Millisecond, slot: -1, group: b.group()}
		if len(v) > 3 {
			slot, ok := v[3].(int64)
			if !ok {
				return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
			}
			a.slot = int(slot)
		}
		return a, nil
	case "held":
		a := attempt{held: true, pttl: time.Duration(n1) * time.Millisecond, group: b.group()}
		if len(v) > 3 {
			a.holder, _ = v[3].(string)
		}
		return a, nil
	case "queued":
		return attempt{}, nil
	}
	return attempt{}, fmt.Errorf("%w: acquire answered %v", ErrUnexpectedReply, v)
}

// Acquire implements lock.Locker: first come, first served.
func (c *instance) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "acquire", name, opts, asMutex, c.queue)
}

// TryAcquire implements lock.Locker. It returns lock.ErrHeld also when the
// name is momentarily free but another claim is queued ahead.
func (c *instance) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return c.acquire(ctx, "try-acquire", name, opts, asMutex, c.try)
}

// acquire is the common start of Acquire, TryAcquire and Campaign (op
// names it in errors): it opens the call and hands a new claim, asking
// for b, to how. The call is measured once, when it returns.
func (c *instance) acquire(ctx context.Context, op, name string, opts []lock.Option, b ballot,
	how func(ctx context.Context, name, claim string, o lock.Options, b ballot) (lock.Lease, error),
) (_ lock.Lease, err error) {
	defer measureAcquire(c.sink, op, time.Now(), &err)
	o, err := c.openAcquire(ctx, op, name, opts)
	if err != nil {
		return nil, err
	}
	defer c.leave()
	return how(ctx, name, c.newClaim(), o, b)
}

// measureAcquire reports an Acquire or TryAcquire (op) that began at start
// and ended with *err.
func measureAcquire(sink metrics.Sink, op string, start time.Time, err *error) {
	sink.Acquire(strings.HasPrefix(op, "try-"), metrics.OutcomeOf(*err), time.Since(start))
}

// kindOf is the kind of a lease granted with o.
func kindOf(o lock.Options) lock.Kind {
	if o.TTL > 0 {
		return lock.KindTTL
	}
	return lock.KindSession
}

// waitGauge is the Waiting gauge of one Acquire: it counts from the first
// attempt that did not grant until the call returns (done, deferred).
type waitGauge struct {
	sink  metrics.Sink
	since time.Time // the send time of the first attempt that did not grant; zero: none yet
}

// queued records that the attempt sent at sent did not grant.
func (w *waitGauge) queued(sent time.Time) {
	if w.since.IsZero() {
		w.since = sent
		w.sink.Waiting(+1)
	}
}

// waited is how long the Acquire has waited in the queue: 0 if it has not.
func (w *waitGauge) waited() time.Duration {
	if w.since.IsZero() {
		return 0
	}
	return time.Since(w.since)
}

func (w *waitGauge) done() {
	if !w.since.IsZero() {
		w.sink.Waiting(-1)
	}
}

// queue is the claim of Acquire or Campaign (b): it queues the claim and
// retries, on wake-ups and on a backoff, until the claim is granted, ctx
// ends or Close begins.
func (c *instance) queue(ctx context.Context, name, claim string, o lock.Options, b ballot) (lock.Lease, error) {
	wake := make(chan struct{}, 1)
	c.setWaiter(claim, wake)
	defer c.setWaiter(claim, nil)

	queued := false  // whether a call may have queued the claim
	var failed error // why the last attempt failed to reach the store
	bo := leasecore.Backoff{Min: minRetry, Max: c.retryCap}
	gauge := waitGauge{sink: c.sink}
	defer gauge.done()
	for {
		if !queued {
			c.waitSubscribed(ctx)
			if ctx.Err() != nil { // nothing queued yet
				return nil, c.unsubscribed(ctx, "acquire", name)
			}
		}
		sent := time.Now()
		callCtx, cancel := c.detached(ctx)
		res, err := c.tryOnce(callCtx, name, claim, o, modeWait, b)
		cancel()
		queued, failed = true, nil
		switch {
		case err == nil && res.granted:
			lease, err := c.grant(ctx, name, claim, o, res, sent, modeWait)
			if err == nil {
				c.sink.Granted(kindOf(o), gauge.waited())
				return lease, nil
			}
			if !errors.Is(err, errLateGrant) {
				return nil, err
			}
			c.log.Debug("redis lock: a grant answered too late was given back", "name", name)
			bo.Reset()
		case err != nil && !retryable(err):
			c.withdraw(ctx, name, claim)
			return nil, callErr(ctx, "acquire", name, err)
		case err != nil:
			failed = err
			c.log.Debug("redis lock: acquire attempt failed", "name", name, "error", err)
		}

		gauge.queued(sent)
		wait := bo.Next()
		if err == nil && res.held && res.pttl > 0 {
			wait = min(wait, res.pttl+time.Millisecond) // the holder's lease runs out then
		}
		woken, err := pause(ctx, wait, c.stop, wake)
		if err != nil {
			c.withdraw(ctx, name, claim)
			if failed == nil && ctx.Err() != nil {
				failed = c.ping(ctx) // did the store stop answering while we waited?
			}
			if failed != nil && ctx.Err() != nil { // ended while the store was unreachable
				return nil, callErr(ctx, "acquire", name, failed)
			}
			return nil, fmt.Errorf("redis lock: acquire %q: %w", name, err)
		}
		if woken {
			bo.Reset()
		}
	}
}

// withdraw removes claim from name's queue and releases a grant that raced
// the withdrawal. Best effort: if Redis does not answer, the claim is pruned
// by its heartbeat deadline and a raced grant expires.
func (c *instance) withdraw(ctx context.Context, name, claim string) {
	callCtx, cancel := c.detached(ctx)
	defer cancel()
	if _, err := c.run(callCtx, withdrawScript, name, claim); err != nil {
		c.log.Debug("redis lock: withdrawing a claim failed; it will be pruned", "name", name, "claim", claim, "error", err)
	}
}

// grant turns a granted attempt, sent at sent in mode m, into a lease; if Close has
// begun, the grant is given back instead.
func (c *instance) grant(ctx context.Context, name, claim string, o lock.Options, a attempt, sent time.Time, m mode) (*lease, error) {
	l := &lease{c: c, claim: claim, ttl: o.TTL, px: c.cfg.leaseTTL(o), slot: a.slot}
	deadline, err := c.firstDeadline(ctx, name, claim, a, l.px, sent, m)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.withdraw(ctx, name, claim)
		return nil, fmt.Errorf("redis lock: %q: %w", name, lock.ErrClosed)
	}
	l.Core, l.ender = leasecore.NewMeasured(name, a.token, kindOf(o), c.sink) // handed out: measured from here
	l.dl.Start(deadline, l.onDeadline)
	c.leases[l] = struct{}{}
	c.mu.Unlock()
	return l, nil
}

// firstDeadline returns the local deadline of a grant sent at sent whose
// lease has TTL px in Redis. A grant whose answer took so long that less
// than half its TTL is left locally (a store that just came back) is
// renewed first, so that the caller does not get a lease that ends at
// once; if that fails, it is given back and errLateGrant returned. A claim
// that waits (Acquire, Redlock) keeps its place at the head of the queue;
// a TryAcquire's claim is withdrawn.
func (c *instance) firstDeadline(ctx context.Context, name, claim string, a attempt, px time.Duration, sent time.Time, m mode) (time.Time, error) {
	margin := driftMargin(px)
	deadline := sent.Add(min(px, a.pttl) - margin)
	for try := 0; time.Until(deadline) < px/2; try++ {
		if try == 2 {
			c.giveBackLate(ctx, name, claim, m, a.group)
			return time.Time{}, errLateGrant
		}
		renewSent := time.Now()
		callCtx, cancel := c.detachedFor(ctx, px/2)
		v, err := c.run(callCtx, renewScript, name, a.token, px.Milliseconds(), claim)
		cancel()
		switch {
		case err != nil:
		case v[0] == "ok":
			deadline = renewSent.Add(px - margin)
		default: // gone: it expired meanwhile
			c.giveBackLate(ctx, name, claim, m, a.group)
			return time.Time{}, errLateGrant
		}
	}
	return deadline, nil
}

// giveBackLate gives back a grant answered too late, made in mode m: a
// waiting claim goes back to the head of the queue, where it was granted,
// so that it keeps its place; a TryAcquire's claim is withdrawn, and so
// is a group's claim (group: a permit, a read or write lease), which
// queues again at the back on its next attempt (DESIGN.md, "Semaphores
// and read-write locks").
func (c *instance) giveBackLate(ctx context.Context, name, claim string, m mode, group bool) {
	if m == modeTry || m == modeTryAny || group {
		c.withdraw(ctx, name, claim)
		return
	}
	c.giveBack(ctx, name, claim, c.cfg.SessionTTL.Milliseconds())
}

// try is TryAcquire's claim: one acquire script that does not queue.
func (c *instance) try(ctx context.Context, name, claim string, o lock.Options, b ballot) (lock.Lease, error) {
	sent := time.Now()
	callCtx, cancel := c.detached(ctx)
	res, err := c.tryOnce(callCtx, name, claim, o, modeTry, b)
	cancel()
	switch {
	case err != nil:
		if retryable(err) {
			// The grant may have happened with its reply lost.
			c.withdraw(ctx, name, claim)
		}
		return nil, callErr(ctx, "try-acquire", name, err)
	case res.granted:
		lease, err := c.grant(ctx, name, claim, o, res, sent, modeTry)
		if err != nil {
			return nil, fmt.Errorf("redis lock: try-acquire %q: %w", name, err)
		}
		c.sink.Granted(kindOf(o), 0)
		return lease, nil
	}
	return nil, fmt.Errorf("redis lock: try-acquire %q: %w", name, lock.ErrHeld)
}

// giveBack deletes the lease of claim if it holds name, keeping the claim's
// place in the queue (Redlock: a vote won here but lost on the majority);
// with requeue > 0 (a heartbeat TTL in ms) a claim no longer queued is put
// back at the head.
func (c *instance) giveBack(ctx context.Context, name, claim string, requeue int64) {
	callCtx, cancel := c.detached(ctx)
	defer cancel()
	if _, err := c.run(callCtx, givebackScript, name, claim, requeue); err != nil {
		c.log.Debug("redis lock: giving back a grant failed; it will expire", "name", name, "claim", claim, "error", err)
	}
}
