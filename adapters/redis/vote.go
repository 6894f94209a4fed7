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

// Acquire implements lock.Locker. Waiters are not served in order: each
// primary queues them (so Inspect counts them), but a grant goes to whoever
// gets a majority first.
func (r *redlock) Acquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return r.acquire(ctx, "acquire", name, opts, true)
}

// TryAcquire implements lock.Locker. It returns an error wrapping
// lock.ErrNoQuorum if a majority of primaries could not be asked.
func (r *redlock) TryAcquire(ctx context.Context, name string, opts ...lock.Option) (lock.Lease, error) {
	return r.acquire(ctx, "try-acquire", name, opts, false)
}

func (r *redlock) acquire(ctx context.Context, op, name string, opts []lock.Option, wait bool) (lock.Lease, error) {
	o, err := r.openAcquire(ctx, op, name, opts)
	if err != nil {
		return nil, err
	}
	defer r.calls.Done()
	px := r.subs[0].cfg.leaseTTL(o)
	r.mu.Lock()
	r.seq++
	claim := claimID(r.id, r.seq)
	r.mu.Unlock()

	m := modeTryAny
	wake := make(chan struct{}, 1)
	if wait {
		m = modeAny
		for _, c := range r.subs {
			c.setWaiter(claim, wake)
		}
		defer func() {
			for _, c := range r.subs {
				c.setWaiter(claim, nil)
			}
		}()
		r.waitSubscribed(ctx)
		if err := ctx.Err(); err != nil { // nothing queued yet
			return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, err)
		}
	}
	withdrawAll := func() {
		r.each(func(_ int, c *instance) { c.withdraw(ctx, name, claim) })
	}

	bo := leasecore.Backoff{Min: minRetry, Max: r.subs[0].retryCap}
	tries := 0 // TryAcquire's rounds lost to a split vote
	for {
		sent := time.Now()
		res := make([]attempt, len(r.subs))
		errs := make([]error, len(r.subs))
		r.each(func(i int, c *instance) {
			callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout(px))
			defer cancel()
			res[i], errs[i] = c.tryOnce(callCtx, name, claim, o, m)
		})
		granted, failed := 0, 0
		var hint time.Duration // the shortest time left of a holder's lease
		holders := make(map[string]int)
		for i := range r.subs {
			if errs[i] == nil && res[i].held {
				holders[res[i].holder]++
			}
			switch {
			case errs[i] != nil:
				failed++
				if !retryable(errs[i]) {
					withdrawAll()
					return nil, ctxErr(ctx, op, name, errs[i])
				}
			case res[i].granted:
				granted++
			case res[i].held && res[i].pttl > 0 && (hint == 0 || res[i].pttl < hint):
				hint = res[i].pttl
			}
		}
		if granted >= r.quorum {
			lease, err := r.grant(ctx, name, claim, o, res, errs, sent)
			if err == nil {
				return lease, nil
			}
			if !wait || (!errors.Is(err, errLateGrant) && !errors.Is(err, lock.ErrNoQuorum)) {
				withdrawAll()
				return nil, ctxErr(ctx, op, name, err)
			}
			// Acquire: the grant was given back; try again.
		} else if granted > 0 || failed > 0 {
			// Give back a minority of grants, and grants whose answer was
			// lost, keeping the claim's place in the queues.
			r.each(func(i int, c *instance) {
				if errs[i] != nil || res[i].granted {
					c.giveBack(ctx, name, claim)
				}
			})
		}
		split := true // no claim holds a majority: racing claims split the votes
		for _, n := range holders {
			if n >= r.quorum {
				split = false
			}
		}
		if !wait {
			switch {
			case failed > len(r.subs)-r.quorum:
				return nil, fmt.Errorf("redis lock: %s %q: %w: %d of %d primaries did not answer: %w",
					op, name, lock.ErrNoQuorum, failed, len(r.subs), errors.Join(errs...))
			case !split || tries == maxSplitTries:
				return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, lock.ErrHeld)
			}
			// Nobody has the name, racers split it: try again after a
			// random pause, so that one of them wins.
			tries++
			t := time.NewTimer(rand.N(time.Duration(tries) * 5 * time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, ctx.Err())
			case <-t.C:
			}
			continue
		}
		delay := bo.Next()
		if hint > 0 {
			delay = min(delay, hint+time.Millisecond)
		}
		wakeCh := wake
		if split && granted > 0 {
			// A split vote: retry soon, after a random pause that the
			// wake-ups of the other racers' give-backs do not cut short.
			delay, wakeCh = rand.N(2*minRetry), nil
			bo.Reset()
		}
		if ctx.Err() != nil {
			withdrawAll()
			return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, ctx.Err())
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			withdrawAll()
			return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, ctx.Err())
		case <-r.stop:
			timer.Stop()
			withdrawAll()
			return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, lock.ErrClosed)
		case <-wakeCh:
			timer.Stop()
			bo.Reset()
		case <-timer.C:
		}
	}
}

// grant turns grants on a majority into a lease. The token is the largest
// of the per-primary tokens, and it is written back as the floor of every
// primary's fence counter (fenceScript) before the lease is handed out:
// any later majority shares a primary with this write, whose counter then
// yields a larger token (I2, as long as that primary keeps its data).
func (r *redlock) grant(ctx context.Context, name, claim string, o lock.Options, res []attempt, errs []error, sent time.Time) (lock.Lease, error) {
	subs := make([]*lease, len(r.subs))
	r.each(func(i int, c *instance) {
		if errs[i] == nil && res[i].granted {
			if l, err := c.grant(ctx, name, claim, o, res[i], sent); err == nil {
				subs[i] = l
			}
		}
	})
	held := 0
	var token uint64
	for _, l := range subs {
		if l != nil {
			held++
			token = max(token, l.Token())
		}
	}
	giveBack := func() {
		r.each(func(i int, c *instance) {
			if subs[i] != nil {
				callCtx, cancel := c.detached(ctx)
				defer cancel()
				_ = subs[i].Release(callCtx)
			}
		})
	}
	if held < r.quorum {
		giveBack()
		return nil, errLateGrant
	}

	var acks atomic.Int32
	r.each(func(i int, c *instance) {
		if errs[i] != nil {
			c.giveBack(ctx, name, claim) // a grant whose answer was lost
		}
		callCtx, cancel := c.detached(ctx)
		defer cancel()
		if v, err := c.run(callCtx, fenceScript, name, token, claim); err == nil && v[0] == "ok" {
			acks.Add(1)
		}
	})
	if int(acks.Load()) < r.quorum {
		giveBack()
		return nil, fmt.Errorf("redis lock: acquire %q: %w: the token reached %d of %d primaries", name, lock.ErrNoQuorum, acks.Load(), len(r.subs))
	}

	alive := 0
	for _, l := range subs {
		if l != nil && !l.Ended() {
			alive++
		}
	}
	if alive < r.quorum { // the fence round took longer than the leases last
		giveBack()
		return nil, errLateGrant
	}
	ml := &multiLease{r: r, subs: subs, alive: held}
	ml.Init(name, token)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		giveBack()
		return nil, fmt.Errorf("redis lock: %q: %w", name, lock.ErrClosed)
	}
	r.leases[ml] = struct{}{}
	r.mu.Unlock()
	for _, l := range subs {
		if l != nil {
			context.AfterFunc(l.Context(), func() { ml.subEnded(l) })
		}
	}
	return ml, nil
}
