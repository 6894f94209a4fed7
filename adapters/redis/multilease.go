package redis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// multiLease is a Redlock lease: per-primary leases on a majority. Each is
// renewed (session) or expires (TTL) on its primary with its own deadline;
// the lease ends when fewer than a majority are left, which is before a
// majority of primaries could have let the name go (I3). The embedded Core
// ends under r.mu, together with its removal from r.leases.
type multiLease struct {
	leasecore.Core
	ender leasecore.Ender
	r     *redlock
	subs  []*lease // nil where the primary did not grant

	alive     int  // per-primary leases not ended; guarded by r.mu
	releasing bool // a Release is ending the per-primary leases; guarded by r.mu
}

var _ lock.Lease = (*multiLease)(nil)

// end ends the lease once, logs why (logEnd) before Done closes, and
// gives up the per-primary leases still held locally (they are deleted in
// the store by their instance); r.mu held (every end of the lease happens
// under r.mu).
func (ml *multiLease) end(why error) {
	if ml.Ended() {
		return
	}
	logEnd(ml.r.log, false, ml.Name(), ml.Token(), ml.r.id, why)
	ml.ender.End(why)
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
	if ml.Ended() {
		return
	}
	ml.alive--
	if ml.alive < ml.r.quorum && !ml.releasing { // Release decides itself
		ml.end(fmt.Errorf("held on fewer than %d of %d primaries: %w", ml.r.quorum, len(ml.r.subs), l.Err()))
	}
}

// Release implements lock.Lease: it releases the lease on every primary and
// succeeds when a majority confirms.
func (ml *multiLease) Release(ctx context.Context) error {
	if err := ml.r.openLease(&ml.Core); err != nil {
		return err
	}
	defer ml.r.leave()
	ml.r.mu.Lock()
	ml.releasing = true
	ml.r.mu.Unlock()
	var ok, gone atomic.Int32
	errs := make([]error, len(ml.subs))
	ends := make([]error, len(ml.subs)) // why the parts that were not held ended
	ml.r.each(func(i int, _ *instance) {
		if l := ml.subs[i]; l != nil {
			callCtx, cancel := subCtx(ctx, l.px)
			defer cancel()
			switch err := l.Release(callCtx); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, lock.ErrNotHeld):
				gone.Add(1)
				ends[i] = l.Err()
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
		ml.end(fmt.Errorf("%w: %q", lock.ErrReleased, ml.Name()))
		return nil
	case int(ok.Load()+gone.Load()) >= ml.r.quorum || ml.Ended():
		// Not held on a majority any more: it ended as its parts did
		// (expired, lost), which is why this Release cannot release it.
		why := errors.Join(ends...)
		if why == nil {
			why = lock.ErrLost
		}
		ml.end(fmt.Errorf("held on fewer than %d of %d primaries: %w", ml.r.quorum, len(ml.subs), why))
		return ml.NotHeld("")
	case ml.alive < ml.r.quorum:
		// Released on some primaries but not on a majority: the rest is
		// deleted by token once they answer; the lease is over either way.
		ml.end(fmt.Errorf("%w: %q (on %d of %d primaries)", lock.ErrReleased, ml.Name(), ok.Load(), len(ml.subs)))
	}
	if ml.r.reachable(ctx, int(ok.Load()), errs) {
		return fmt.Errorf("redis lock: release %q: %w", ml.Name(), ctx.Err())
	}
	return ctxErr(ctx, "release", ml.Name(), fmt.Errorf("%w: released on %d of %d primaries: %w",
		lock.ErrNoQuorum, ok.Load(), len(ml.subs), causes(ctx, errs...)))
}

// Refresh implements lock.Lease: it refreshes the lease on every primary
// that holds it and succeeds when a majority confirms.
func (ml *multiLease) Refresh(ctx context.Context) error {
	if err := ml.r.openLease(&ml.Core); err != nil {
		return err
	}
	defer ml.r.leave()
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
	ml.r.mu.Lock()
	ended := ml.Ended()
	ml.r.mu.Unlock()
	switch {
	case ended: // also when a majority acknowledged after their deadlines
		return ml.NotHeld("")
	case int(ok.Load()) >= ml.r.quorum:
		return nil
	}
	if ml.r.reachable(ctx, int(ok.Load()), errs) {
		return fmt.Errorf("redis lock: refresh %q: %w", ml.Name(), ctx.Err())
	}
	return ctxErr(ctx, "refresh", ml.Name(), fmt.Errorf("%w: refreshed on %d of %d primaries: %w",
		lock.ErrNoQuorum, ok.Load(), len(ml.subs), causes(ctx, errs...)))
}
