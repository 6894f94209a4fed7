package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// redlock is the Redlock mode: one instance per primary, all with the same
// Locker ID (so a claim ID and its wake-up channel mean the same on every
// primary), and a lease that is held while a majority of its per-primary
// leases are.
type redlock struct {
	subs   []*instance
	quorum int
	id     string
	sink   metrics.Sink // Config.Metrics, or metrics.Nop; the parts report nothing
	log    *slog.Logger

	gate // its mu guards seq and leases

	seq    uint64
	leases map[*multiLease]struct{}

	rounds atomic.Int64 // rounds of votes asked, for tests
}

var _ lock.Locker = (*redlock)(nil)

func newRedlock(cfg Config) *redlock {
	r := &redlock{
		quorum: len(cfg.Addrs)/2 + 1,
		id:     newLockerID(),
		sink:   metrics.OrNop(cfg.Metrics),
		log:    cfg.Logger,
		gate:   gate{stop: make(chan struct{}), idle: make(chan struct{})},
		leases: make(map[*multiLease]struct{}),
	}
	for _, a := range cfg.Addrs {
		one := cfg
		one.Addrs, one.Addr = nil, a
		one.Metrics = nil                          // the Redlock Locker reports
		one.Logger = cfg.Logger.With("primary", a) // which primary says so: only the adapter knows
		c := newInstance(one, r.id)
		c.opTimeout = callTimeout(cfg.SessionTTL) // cleanups must not wait on a stalled primary either
		c.part = true
		r.subs = append(r.subs, c)
	}
	r.sink.Sessions(+1)
	return r
}

// each runs fn for every primary in parallel and returns when all are done.
func (r *redlock) each(fn func(i int, c *instance)) {
	var wg sync.WaitGroup
	for i, c := range r.subs {
		wg.Go(func() { fn(i, c) })
	}
	wg.Wait()
}

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

// Inspect implements lock.Locker by asking every primary (each answers
// atomically) and combining the answers of at least a majority: the name
// is held if a majority reports the same holder's claim, free if no claim
// can hold a majority even counting the primaries that did not answer,
// and otherwise unknown (lock.ErrNoQuorum); Waiters is the largest count
// that a majority reports at least, Queue the queue of a primary that
// reports that count. Kind, Since, Holder and Node come from the
// majority's answers (holder).
func (r *redlock) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	if err := r.openInspect(name); err != nil {
		return lock.Info{}, err
	}
	defer r.leave()
	infos := make([]instanceInfo, len(r.subs))
	errs := make([]error, len(r.subs))
	r.each(func(i int, c *instance) {
		callCtx, cancel := subCtx(ctx, c.cfg.SessionTTL)
		defer cancel()
		infos[i], errs[i] = c.look(callCtx, name, o.QueueLimit)
	})
	var good []instanceInfo
	for i, err := range errs {
		if err == nil {
			good = append(good, infos[i])
		}
	}
	if len(good) < r.quorum {
		if r.reachable(ctx, len(good), errs) {
			return lock.Info{}, fmt.Errorf("redis lock: inspect %q: %w", name, ctx.Err())
		}
		return lock.Info{}, ctxErr(ctx, "inspect", name,
			fmt.Errorf("%w: %d of %d primaries answered: %w", lock.ErrNoQuorum, len(good), len(r.subs), causes(ctx, errs...)))
	}
	info := lock.Info{Name: name}
	slices.SortFunc(good, func(a, b instanceInfo) int { return cmp.Compare(b.Waiters, a.Waiters) })
	info.Waiters, info.Queue = good[r.quorum-1].Waiters, good[r.quorum-1].Queue
	byClaim := make(map[string]int)
	for _, si := range good {
		if si.Held {
			byClaim[si.claim]++
		}
	}
	failed := len(r.subs) - len(good)
	for claim, n := range byClaim {
		switch {
		case n >= r.quorum:
			holder(&info, good, claim)
			return info, nil
		case n+failed >= r.quorum:
			// Held on a minority that the silent primaries may make a
			// majority: the answers do not settle it.
			return lock.Info{}, ctxErr(ctx, "inspect", name, fmt.Errorf("%w: held on %d of %d primaries, %d did not answer: %w",
				lock.ErrNoQuorum, n, len(r.subs), failed, causes(ctx, errs...)))
		}
	}
	return info, nil // no claim holds, or can hold, a majority
}

// holder fills in info from the answers of the primaries that report
// claim as the holder (held on a majority): Since is the smallest age
// among them (the grant was complete no earlier), the rest is the same in
// each.
func holder(info *lock.Info, good []instanceInfo, claim string) {
	info.Held = true
	first := true
	for _, si := range good {
		if !si.Held || si.claim != claim {
			continue
		}
		if first || si.Since < info.Since {
			info.Since = si.Since
		}
		first = false
		info.Owner, info.Kind, info.Holder, info.Node = si.Owner, si.Kind, si.Holder, si.Node
		info.Token = max(info.Token, si.Token, si.fence)
		if si.ExpiresIn > 0 && (info.ExpiresIn == 0 || si.ExpiresIn < info.ExpiresIn) {
			info.ExpiresIn = si.ExpiresIn
		}
	}
}

// reachable reports whether a call that failed after ctx ended found a
// majority reachable: the parts that succeeded (ok) and those whose error
// does not say ErrNoQuorum (cut off by ctx on a reachable primary, or
// never sent) make a majority. Then ctx ended the call, not the store, and
// its error is ctx's alone (R5).
func (r *redlock) reachable(ctx context.Context, ok int, errs []error) bool {
	if ctx.Err() == nil {
		return false
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, lock.ErrNoQuorum) {
			ok++
		}
	}
	return ok >= r.quorum
}
