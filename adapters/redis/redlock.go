package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// redlock is the Redlock mode: one instance per primary, all with the same
// Locker ID (so a claim ID and its wake-up channel mean the same on every
// primary), and a lease that is held while a majority of its per-primary
// leases are.
type redlock struct {
	subs   []*instance
	quorum int
	id     string

	stop  chan struct{} // closed by Close
	calls sync.WaitGroup

	mu     sync.Mutex
	closed bool
	seq    uint64
	leases map[*multiLease]struct{}
}

var _ lock.Locker = (*redlock)(nil)

func newRedlock(cfg Config) *redlock {
	r := &redlock{
		quorum: len(cfg.Addrs)/2 + 1,
		id:     newLockerID(),
		stop:   make(chan struct{}),
		leases: make(map[*multiLease]struct{}),
	}
	for _, a := range cfg.Addrs {
		one := cfg
		one.Addrs, one.Addr = nil, a
		c := newInstance(one, r.id)
		c.opTimeout = callTimeout(cfg.SessionTTL) // cleanups must not wait on a stalled primary either
		r.subs = append(r.subs, c)
	}
	return r
}

func (r *redlock) enter() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return lock.ErrClosed
	}
	r.calls.Add(1)
	return nil
}

// each runs fn for every primary in parallel and returns when all are done.
func (r *redlock) each(fn func(i int, c *instance)) {
	var wg sync.WaitGroup
	for i, c := range r.subs {
		wg.Go(func() { fn(i, c) })
	}
	wg.Wait()
}

// maxSplitTries bounds the rounds a TryAcquire makes when racing claims
// split the primaries between them and nobody holds the name.
const maxSplitTries = 20

// callTimeout bounds one primary's answer: Redlock wants it small against
// the TTL, so that a stalled primary neither eats the lease nor stalls every
// call; a fifth of the TTL, within [100 ms, 1 s].
func callTimeout(px time.Duration) time.Duration {
	return min(time.Second, max(px/5, 100*time.Millisecond))
}

// subCtx bounds one primary's part of a Release, Refresh or Inspect.
func subCtx(ctx context.Context, px time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout(px))
}

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
	o, err := lock.ValidateRequest(name, opts...)
	if err != nil {
		return nil, err
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis lock: %s %q: %w", op, name, err)
	}
	px := o.TTL
	if px == 0 {
		px = r.subs[0].cfg.SessionTTL
	}
	r.mu.Lock()
	r.seq++
	claim := r.id + "/" + strconv.FormatUint(r.seq, 10)
	r.mu.Unlock()

	mode := "tryany"
	wake := make(chan struct{}, 1)
	if wait {
		mode = "any"
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

	backoff := minRetry
	tries := 0 // TryAcquire's rounds lost to a split vote
	for {
		sent := time.Now()
		res := make([]attempt, len(r.subs))
		errs := make([]error, len(r.subs))
		r.each(func(i int, c *instance) {
			callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout(px))
			defer cancel()
			res[i], errs[i] = c.tryOnce(callCtx, name, claim, o, mode)
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
		delay := jitter(backoff)
		backoff = min(2*backoff, r.subs[0].retryCap)
		if hint > 0 {
			delay = min(delay, hint+time.Millisecond)
		}
		wakeCh := wake
		if split && granted > 0 {
			// A split vote: retry soon, after a random pause that the
			// wake-ups of the other racers' give-backs do not cut short.
			delay, wakeCh, backoff = rand.N(2*minRetry), nil, minRetry
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
			backoff = minRetry
		case <-timer.C:
		}
	}
}

// waitSubscribed waits (briefly) until every primary's wake-up channel is
// subscribed.
func (r *redlock) waitSubscribed(ctx context.Context) {
	t := time.NewTimer(subscribeWait)
	defer t.Stop()
	for _, c := range r.subs {
		select {
		case <-c.subReady:
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		case <-t.C:
			return
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
			token = max(token, l.token)
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
		if l != nil && l.ctx.Err() == nil {
			alive++
		}
	}
	if alive < r.quorum { // the fence round took longer than the leases last
		giveBack()
		return nil, errLateGrant
	}
	ml := &multiLease{r: r, name: name, token: token, ttl: o.TTL, subs: subs, alive: held}
	ml.ctx, ml.cancel = context.WithCancelCause(context.Background())
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
			context.AfterFunc(l.ctx, func() { ml.subEnded(l) })
		}
	}
	return ml, nil
}

// Inspect implements lock.Locker by asking every primary (each answers
// atomically) and combining the answers of at least a majority: the name
// is held if a majority reports the same holder's claim; Waiters is the
// largest count that a majority reports at least.
func (r *redlock) Inspect(ctx context.Context, name string) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	if err := r.enter(); err != nil {
		return lock.Info{}, err
	}
	defer r.calls.Done()
	infos := make([]instanceInfo, len(r.subs))
	errs := make([]error, len(r.subs))
	r.each(func(i int, c *instance) {
		callCtx, cancel := subCtx(ctx, c.cfg.SessionTTL)
		defer cancel()
		infos[i], errs[i] = c.inspect(callCtx, name)
	})
	var good []instanceInfo
	for i, err := range errs {
		if err == nil {
			good = append(good, infos[i])
		}
	}
	if len(good) < r.quorum {
		return lock.Info{}, ctxErr(ctx, "inspect", name,
			fmt.Errorf("%w: %d of %d primaries answered: %w", lock.ErrNoQuorum, len(good), len(r.subs), errors.Join(errs...)))
	}
	info := lock.Info{Name: name}
	slices.SortFunc(good, func(a, b instanceInfo) int { return cmp.Compare(b.Waiters, a.Waiters) })
	info.Waiters = good[r.quorum-1].Waiters
	byClaim := make(map[string]int)
	for _, si := range good {
		if si.Held {
			byClaim[si.claim]++
		}
	}
	for claim, n := range byClaim {
		if n < r.quorum {
			continue
		}
		info.Held = true
		for _, si := range good {
			if !si.Held || si.claim != claim {
				continue
			}
			info.Owner = si.Owner
			info.Token = max(info.Token, si.Token, si.fence)
			if si.ExpiresIn > 0 && (info.ExpiresIn == 0 || si.ExpiresIn < info.ExpiresIn) {
				info.ExpiresIn = si.ExpiresIn
			}
		}
	}
	return info, nil
}

// Close implements lock.Locker. It reports an error only if the leases
// could not be deleted on a majority of primaries.
func (r *redlock) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	r.mu.Unlock()
	r.calls.Wait()

	r.mu.Lock()
	for ml := range r.leases {
		ml.end(fmt.Errorf("%w: its Locker was closed", lock.ErrReleased))
	}
	r.mu.Unlock()
	errs := make([]error, len(r.subs))
	r.each(func(i int, c *instance) { errs[i] = c.Close() }) // releases the per-primary leases
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed > len(r.subs)-r.quorum { // a dead minority is what Redlock is for
		return fmt.Errorf("redis lock: close: %w", errors.Join(errs...))
	}
	return nil
}

// multiLease is a Redlock lease: per-primary leases on a majority. Each is
// renewed (session) or expires (TTL) on its primary with its own deadline;
// the lease ends when fewer than a majority are left, which is before a
// majority of primaries could have let the name go (I3).
type multiLease struct {
	r      *redlock
	name   string
	token  uint64
	ttl    time.Duration
	subs   []*lease // nil where the primary did not grant
	ctx    context.Context
	cancel context.CancelCauseFunc

	alive     int  // per-primary leases not ended; guarded by r.mu
	releasing bool // a Release is ending the per-primary leases; guarded by r.mu
}

var _ lock.Lease = (*multiLease)(nil)

func (ml *multiLease) Name() string             { return ml.name }
func (ml *multiLease) Token() uint64            { return ml.token }
func (ml *multiLease) Done() <-chan struct{}    { return ml.ctx.Done() }
func (ml *multiLease) Context() context.Context { return ml.ctx }
func (ml *multiLease) Err() error {
	if ml.ctx.Err() == nil {
		return nil
	}
	return context.Cause(ml.ctx)
}

// end ends the lease once, and gives up the per-primary leases still held
// locally (they are deleted in the store by their instance); r.mu held.
func (ml *multiLease) end(why error) {
	if ml.ctx.Err() != nil {
		return
	}
	ml.cancel(why)
	delete(ml.r.leases, ml)
	for _, l := range ml.subs {
		if l != nil {
			l.c.abandon(l)
		}
	}
}

// subEnded runs when a per-primary lease has ended.
func (ml *multiLease) subEnded(l *lease) {
	ml.r.mu.Lock()
	defer ml.r.mu.Unlock()
	if ml.ctx.Err() != nil {
		return
	}
	ml.alive--
	if ml.alive < ml.r.quorum && !ml.releasing { // Release decides itself
		ml.end(fmt.Errorf("held on fewer than %d of %d primaries: %w", ml.r.quorum, len(ml.r.subs), l.Err()))
	}
}

func (ml *multiLease) notHeld() error {
	return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, ml.name, ml.Err())
}

// Release implements lock.Lease: it releases the lease on every primary and
// succeeds when a majority confirms.
func (ml *multiLease) Release(ctx context.Context) error {
	if ml.ctx.Err() != nil {
		return ml.notHeld()
	}
	if err := ml.r.enter(); err != nil {
		return err
	}
	defer ml.r.calls.Done()
	ml.r.mu.Lock()
	ml.releasing = true
	ml.r.mu.Unlock()
	var ok, gone atomic.Int32
	errs := make([]error, len(ml.subs))
	ml.r.each(func(i int, _ *instance) {
		if l := ml.subs[i]; l != nil {
			callCtx, cancel := subCtx(ctx, l.px)
			defer cancel()
			switch err := l.Release(callCtx); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, lock.ErrNotHeld):
				gone.Add(1)
			default:
				errs[i] = err
			}
		}
	})
	ml.r.mu.Lock()
	defer ml.r.mu.Unlock()
	ml.releasing = false
	switch {
	case int(ok.Load()) >= ml.r.quorum:
		ml.end(fmt.Errorf("%w: %q", lock.ErrReleased, ml.name))
		return nil
	case int(ok.Load()+gone.Load()) >= ml.r.quorum || ml.ctx.Err() != nil:
		ml.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
		return ml.notHeld()
	case ml.alive < ml.r.quorum:
		// Released on some primaries but not on a majority: the rest is
		// deleted by token once they answer; the lease is over either way.
		ml.end(fmt.Errorf("%w: %q (on %d of %d primaries)", lock.ErrReleased, ml.name, ok.Load(), len(ml.subs)))
	}
	return ctxErr(ctx, "release", ml.name, fmt.Errorf("%w: released on %d of %d primaries: %w",
		lock.ErrNoQuorum, ok.Load(), len(ml.subs), errors.Join(errs...)))
}

// Refresh implements lock.Lease: it refreshes the lease on every primary
// that holds it and succeeds when a majority confirms.
func (ml *multiLease) Refresh(ctx context.Context) error {
	if ml.ctx.Err() != nil {
		return ml.notHeld()
	}
	if err := ml.r.enter(); err != nil {
		return err
	}
	defer ml.r.calls.Done()
	var ok atomic.Int32
	errs := make([]error, len(ml.subs))
	ml.r.each(func(i int, _ *instance) {
		if l := ml.subs[i]; l != nil {
			callCtx, cancel := subCtx(ctx, l.px)
			defer cancel()
			if errs[i] = l.Refresh(callCtx); errs[i] == nil {
				ok.Add(1)
			}
		}
	})
	if int(ok.Load()) >= ml.r.quorum {
		return nil
	}
	ml.r.mu.Lock()
	ended := ml.ctx.Err() != nil
	ml.r.mu.Unlock()
	if ended {
		return ml.notHeld()
	}
	return ctxErr(ctx, "refresh", ml.name, fmt.Errorf("%w: refreshed on %d of %d primaries: %w",
		lock.ErrNoQuorum, ok.Load(), len(ml.subs), errors.Join(errs...)))
}
