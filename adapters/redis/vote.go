package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// A Redlock Acquire or TryAcquire runs in rounds: round asks every
// primary for a vote and returns a tally; settle turns the tally into a
// lease (a majority granted), a final error, or the decision to try again
// (giving back the grants of a minority first); backOff waits before the
// next round.

// acquisition is one Redlock Acquire (wait) or TryAcquire call: a claim
// that asks every primary to grant it, round after round.
type acquisition struct {
	r     *redlock
	ctx   context.Context
	op    string // "acquire" or "try-acquire", for errors
	name  string
	claim string
	o     lock.Options
	px    time.Duration // the lease's TTL in Redis
	wait  bool          // Acquire: queue on every primary and wait
	m     mode

	wake  chan struct{}     // Acquire: wake-ups from every primary
	bo    leasecore.Backoff // Acquire: the pause between rounds
	tries int               // TryAcquire: rounds lost to a split vote
	gauge waitGauge         // Acquire: waiting since the first round without a majority
}

// tally is the outcome of one round of votes.
type tally struct {
	sent    time.Time // when the round began: every grant's deadline counts from it
	res     []attempt // per primary
	errs    []error   // per primary
	granted int       // primaries that granted
	failed  int       // primaries that did not answer or refused
	refused int       // of those, primaries that refused (an error asking again cannot change)

	hint  time.Duration // the shortest time left of a holder's lease
	split bool          // no other claim can hold a majority, even counting the failed primaries
}

// maxSplitTries bounds the rounds a TryAcquire makes when racing claims
// split the primaries between them and nobody holds the name.
const maxSplitTries = 20

// acquire runs one Acquire (wait) or TryAcquire (op names it in errors):
// rounds of votes until settle decides.
func (r *redlock) acquire(ctx context.Context, op, name string, opts []lock.Option, wait bool) (_ lock.Lease, err error) {
	defer measureAcquire(r.sink, op, time.Now(), &err)
	o, err := r.openAcquire(ctx, op, name, opts)
	if err != nil {
		return nil, err
	}
	defer r.leave()
	a := &acquisition{r: r, ctx: ctx, op: op, name: name, o: o, px: r.subs[0].cfg.leaseTTL(o), wait: wait, m: modeTryAny}
	a.gauge.sink = r.sink
	defer a.gauge.done()
	r.mu.Lock()
	r.seq++
	a.claim = claimID(r.id, r.seq)
	r.mu.Unlock()
	if wait {
		a.m, a.wake = modeAny, make(chan struct{}, 1)
		a.bo = leasecore.Backoff{Min: minRetry, Max: r.subs[0].retryCap}
		r.setWaiter(a.claim, a.wake)
		defer r.setWaiter(a.claim, nil)
		r.waitSubscribed(ctx)
		if ctx.Err() != nil { // nothing queued yet
			return nil, r.unsubscribed(ctx, a)
		}
	}
	for {
		t := a.round()
		if lease, err := a.settle(t); lease != nil || err != nil {
			if lease != nil {
				r.sink.Granted(kindOf(o), a.gauge.waited())
			}
			return lease, err
		}
		if wait {
			a.gauge.queued(t.sent)
		}
		if err := a.backOff(t); err != nil {
			return nil, err
		}
	}
}

// wrap prefixes err with the call's op and name.
func (a *acquisition) wrap(err error) error {
	return fmt.Errorf("redis lock: %s %q: %w", a.op, a.name, err)
}

// round asks every primary in parallel to grant the claim, each within
// callTimeout, and tallies the answers.
func (a *acquisition) round() tally {
	n := len(a.r.subs)
	a.r.rounds.Add(1)
	t := tally{sent: time.Now(), res: make([]attempt, n), errs: make([]error, n)}
	a.r.each(func(i int, c *instance) {
		callCtx, cancel := c.detachedFor(a.ctx, callTimeout(a.px))
		defer cancel()
		t.res[i], t.errs[i] = c.tryOnce(callCtx, a.name, a.claim, a.o, a.m, asMutex)
	})
	t.count(a.r.quorum)
	return t
}

// count fills in the totals of t from its answers. A primary that did not
// answer may hold the name for another claim: racing claims split the
// votes only if no other claim can hold a majority counting those.
func (t *tally) count(quorum int) {
	holders := make(map[string]int) // another holder's claim → primaries
	for i, res := range t.res {
		switch err := t.errs[i]; {
		case err != nil:
			t.failed++
			if !retryable(err) {
				t.refused++
			}
		case res.granted:
			t.granted++
		case res.held:
			holders[res.holder]++
			if res.pttl > 0 && (t.hint == 0 || res.pttl < t.hint) {
				t.hint = res.pttl
			}
		}
	}
	t.split = true
	for _, n := range holders {
		if n+t.failed >= quorum {
			t.split = false
		}
	}
}

// lost reports whether primary i's vote may have granted without its
// answer arriving (a network failure, not a refusal).
func (t *tally) lost(i int) bool { return t.errs[i] != nil && retryable(t.errs[i]) }

// settle decides on a round: a lease if a majority granted, an error if
// the call is over, neither if another round is due. Grants on a minority,
// and grants whose answer was lost, are given back first.
func (a *acquisition) settle(t tally) (lock.Lease, error) {
	n := len(a.r.subs)
	if t.refused > n-a.r.quorum { // a majority refuses: asking again cannot help
		a.withdrawAll()
		return nil, ctxErr(a.ctx, a.op, a.name, fmt.Errorf("%d of %d primaries refused: %w", t.refused, n, causes(a.ctx, t.errs...)))
	}
	if t.granted >= a.r.quorum {
		lease, err := a.grant(t)
		if err == nil {
			return lease, nil
		}
		if !a.wait || (!errors.Is(err, errLateGrant) && !errors.Is(err, lock.ErrNoQuorum)) {
			a.withdrawAll()
			return nil, callErr(a.ctx, a.op, a.name, err)
		}
		// Acquire: the grant was given back; try again.
	} else if t.granted > 0 || t.failed > 0 {
		// Keep the claim's place in the queues.
		a.r.each(func(i int, c *instance) {
			if t.lost(i) || t.res[i].granted {
				c.giveBack(a.ctx, a.name, a.claim, 0)
			}
		})
	}
	if a.wait {
		return nil, nil
	}
	switch {
	case t.failed > n-a.r.quorum:
		return nil, ctxErr(a.ctx, a.op, a.name, noMajority(a.ctx, t))
	case !t.split || a.tries == maxSplitTries:
		return nil, a.wrap(lock.ErrHeld)
	}
	return nil, nil // nobody has the name, racers split it
}

// noMajority is the error of a round in which a majority failed; ctx is
// the caller's.
func noMajority(ctx context.Context, t tally) error {
	return fmt.Errorf("%w: %d of %d primaries did not answer: %w", lock.ErrNoQuorum, t.failed, len(t.errs), causes(ctx, t.errs...))
}

// backOff waits before the next round. TryAcquire (racers split the votes
// while nobody holds the name): a random pause that grows with its tries,
// so that one of the racers wins. Acquire: the backoff, cut short by a
// wake-up or by the end of the holder's lease; after a split vote in which
// it won some primaries, a short random pause that the wake-ups of the
// other racers' give-backs do not cut short. When ctx ends or Close
// begins, an Acquire withdraws its claim and backOff returns the error.
func (a *acquisition) backOff(t tally) error {
	if !a.wait {
		a.tries++
		if err := leasecore.Sleep(a.ctx, rand.N(time.Duration(a.tries)*5*time.Millisecond)); err != nil {
			return a.wrap(err)
		}
		return nil
	}
	delay := a.bo.Next()
	if t.hint > 0 {
		delay = min(delay, t.hint+time.Millisecond)
	}
	wake := a.wake
	if t.split && t.granted > 0 {
		delay, wake = rand.N(2*minRetry), nil
		a.bo.Reset()
	}
	woken, err := pause(a.ctx, delay, a.r.stop, wake)
	if err != nil {
		a.withdrawAll()
		if a.ctx.Err() != nil && t.failed > len(a.r.subs)-a.r.quorum { // the store was unreachable
			return ctxErr(a.ctx, a.op, a.name, noMajority(a.ctx, t))
		}
		return a.wrap(err)
	}
	if woken {
		a.bo.Reset()
	}
	return nil
}

// withdrawAll withdraws the claim on every primary.
func (a *acquisition) withdrawAll() {
	a.r.each(func(_ int, c *instance) { c.withdraw(a.ctx, a.name, a.claim) })
}

// grant turns grants on a majority into a lease. The token is the largest
// of the per-primary tokens, and it is written back as the floor of every
// primary's fence counter (fenceScript) before the lease is handed out:
// any later majority shares a primary with this write, whose counter then
// yields a larger token (I2, as long as that primary keeps its data).
func (a *acquisition) grant(t tally) (lock.Lease, error) {
	r := a.r
	subs := a.leases(t)
	held := 0
	var token uint64
	for _, l := range subs {
		if l != nil {
			held++
			token = max(token, l.Token())
		}
	}
	if held < r.quorum {
		a.giveBack(subs)
		return nil, errLateGrant
	}
	if acks := a.fence(t, token); acks < r.quorum {
		a.giveBack(subs)
		return nil, fmt.Errorf("redis lock: acquire %q: %w: the token reached %d of %d primaries", a.name, lock.ErrNoQuorum, acks, len(r.subs))
	}
	alive := 0
	for _, l := range subs {
		if l != nil && !l.Ended() {
			alive++
		}
	}
	if alive < r.quorum { // the fence round took longer than the leases last
		a.giveBack(subs)
		return nil, errLateGrant
	}
	ml := &multiLease{r: r, subs: subs, alive: held}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		a.giveBack(subs)
		return nil, fmt.Errorf("redis lock: %q: %w", a.name, lock.ErrClosed)
	}
	ml.Core, ml.ender = leasecore.NewMeasured(a.name, token, kindOf(a.o), r.sink) // handed out: measured from here
	r.leases[ml] = struct{}{}
	r.mu.Unlock()
	for _, l := range subs {
		if l != nil {
			context.AfterFunc(l.Context(), func() { ml.subEnded(l) })
		}
	}
	return ml, nil
}

// leases turns the round's grants into per-primary leases (nil where a
// primary did not grant, or its grant could not become a lease).
func (a *acquisition) leases(t tally) []*lease {
	subs := make([]*lease, len(a.r.subs))
	a.r.each(func(i int, c *instance) {
		if t.errs[i] == nil && t.res[i].granted {
			if l, err := c.grant(a.ctx, a.name, a.claim, a.o, t.res[i], t.sent, a.m); err == nil {
				subs[i] = l
			}
		}
	})
	return subs
}

// fence raises every primary's fence counter to token (fenceScript), which
// also dequeues the claim, and returns how many primaries acknowledged. A
// primary whose vote was lost gives back a grant it may have made.
func (a *acquisition) fence(t tally, token uint64) int {
	var acks atomic.Int32
	a.r.each(func(i int, c *instance) {
		if t.lost(i) {
			c.giveBack(a.ctx, a.name, a.claim, 0) // a grant whose answer was lost
		}
		callCtx, cancel := c.detached(a.ctx)
		defer cancel()
		if v, err := c.run(callCtx, fenceScript, a.name, token, a.claim); err == nil && v[0] == "ok" {
			acks.Add(1)
		}
	})
	return int(acks.Load())
}

// giveBack releases the per-primary leases of a grant that does not
// become a Redlock lease.
func (a *acquisition) giveBack(subs []*lease) {
	a.r.each(func(i int, c *instance) {
		if subs[i] != nil {
			callCtx, cancel := c.detached(a.ctx)
			defer cancel()
			_ = subs[i].Release(callCtx)
		}
	})
}
