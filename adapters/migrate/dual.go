package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// errBehind marks a Dual attempt that failed because a store could not
// raise its tokens that far (ZooKeeper behind: DESIGN.md, "What each pair
// of stores guarantees"). Another attempt can succeed: each one's writes
// move ZooKeeper's zxid on faster than the other store's tokens.
var errBehind = errors.New("a store's tokens are behind the other's")

// warnAfterAttempts: a Dual Acquire that has retried this often says so,
// once: from may never catch up (a standalone ZooKeeper behind the
// embedded log, DESIGN.md).
const warnAfterAttempts = 20

// errHalfEnded marks a Dual attempt whose grant in one store ended before
// the other was in hand (from's TTL passed while it waited in to): the
// store may have granted the name to someone else meanwhile, and from's
// floor may have come after that grant. Another attempt starts over.
var errHalfEnded = errors.New("a half ended before the lease was complete")

// dual makes Dual attempts until one succeeds, fails otherwise than with
// errBehind or errHalfEnded, or ctx ends; a TryAcquire makes one.
func (l *Locker) dual(ctx context.Context, name string, opts []lock.Option, get acquireFunc, try bool) (lock.Lease, error) {
	backoff := leasecore.Backoff{Min: time.Millisecond, Max: 100 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		le, err := l.dualOnce(ctx, name, opts, get)
		if err == nil || try || !errors.Is(err, errBehind) && !errors.Is(err, errHalfEnded) {
			return le, err
		}
		if attempt == warnAfterAttempts {
			l.cfg.Logger.Warn("migrate: a Dual Acquire keeps trying (a store's tokens behind the other's, or a half ending before both were held); it retries until its ctx ends",
				"name", name, "attempts", attempt, "error", err)
		}
		if werr := backoff.Wait(ctx); werr != nil {
			// The store answered: ctx's error alone (R5), the last cause
			// in the message.
			return nil, fmt.Errorf("migrate: %q: %w (last attempt: %s)", name, werr, err.Error())
		}
	}
}

// dualOnce takes name in from, then in to, raising each store's tokens
// above the other's grant with FencedTokens (DESIGN.md, "Tokens").
// Whatever fails after the grant in from releases what was granted before
// returning.
func (l *Locker) dualOnce(ctx context.Context, name string, opts []lock.Option, get acquireFunc) (lock.Lease, error) {
	fromLease, err := get(l.from, ctx, name, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate: %q in from: %w", name, err)
	}
	fenced := l.cfg.Tokens == FencedTokens
	if fenced {
		// to's next grant gets at least from's token: never handed out
		// itself, it sits between from's earlier and later grants.
		if err := l.to.(lock.TokenFloorer).FloorToken(ctx, name, fromLease.Token()-1); err != nil {
			_ = l.giveBack(fromLease)
			return nil, fmt.Errorf("migrate: %q: raising to's tokens to from's %d: %w", name, fromLease.Token(), behind(err))
		}
	}
	toLease, err := get(l.to, ctx, name, opts...)
	if err != nil {
		_ = l.giveBack(fromLease)
		return nil, fmt.Errorf("migrate: %q in to: %w", name, err)
	}
	token := fromLease.Token()
	if fenced {
		token = toLease.Token()
		// Equal tokens need no raise: from's next grant is above its own.
		if token > fromLease.Token() {
			if err := l.from.(lock.TokenFloorer).FloorToken(ctx, name, token); err != nil {
				l.giveBackBoth(fromLease, toLease)
				return nil, fmt.Errorf("migrate: %q: raising from's tokens above to's %d: %w", name, token, behind(err))
			}
		}
	}
	// Both halves must still be held now, so that step 4 ran while from
	// was held and no other lease was granted in either store meanwhile.
	for _, half := range []lock.Lease{fromLease, toLease} {
		if cause := half.Err(); cause != nil {
			l.giveBackBoth(fromLease, toLease)
			return nil, fmt.Errorf("migrate: %q: %w: %w", name, errHalfEnded, cause)
		}
	}
	return l.newDualLease(fromLease, toLease, token), nil
}

// giveBackBoth releases the two halves of a Dual attempt that will not
// be handed out, in the Release order: to, then from.
func (l *Locker) giveBackBoth(fromLease, toLease lock.Lease) {
	_ = l.giveBack(toLease)
	_ = l.giveBack(fromLease)
}

// dualLease is a lease held in both stores. It ends when either half ends;
// its watcher then releases the other half.
type dualLease struct {
	leasecore.Core
	end      leasecore.Ender
	from, to lock.Lease
	l        *Locker

	settled   chan struct{} // closed once the half left after the end is released
	settleErr error         // that release's error; read after settled
}

func (l *Locker) newDualLease(from, to lock.Lease, token uint64) *dualLease {
	core, end := leasecore.New(from.Name(), token)
	d := &dualLease{Core: core, end: end, from: from, to: to, l: l, settled: make(chan struct{})}
	go d.watch()
	return d
}

// watch ends the lease with the cause of the first half to end, then
// releases the other half.
func (d *dualLease) watch() {
	first, other := d.to, d.from
	select {
	case <-d.to.Done():
	case <-d.from.Done():
		first, other = d.from, d.to
	}
	d.end.End(first.Err())
	d.settleErr = d.l.giveBack(other)
	close(d.settled)
	// The half that ended first may still be held in its store (it ended
	// on its holder's deadline, or a late Refresh extended it there): its
	// Release says ErrNotHeld at once and releases it there by token (R2).
	_ = d.l.giveBack(first)
}

// Refresh implements lock.Lease: it refreshes from, then to; nil only if
// both did and the lease is still held (R2). It returns once the lease has
// ended, whatever ctx (R4).
func (d *dualLease) Refresh(ctx context.Context) error {
	if d.Ended() {
		return d.NotHeld("migrate")
	}
	ctx, cancel := d.untilEnd(ctx)
	defer cancel()
	err := d.from.Refresh(ctx)
	side := "from"
	if err == nil {
		err, side = d.to.Refresh(ctx), "to"
	}
	if d.endedBy(err) {
		return d.NotHeld("migrate")
	}
	if err != nil {
		return fmt.Errorf("migrate: refresh %q in %s: %w", d.Name(), side, err)
	}
	return nil
}

// untilEnd is ctx, also ended when the lease ends: a half's call made
// with it returns once the Dual lease has ended (R4).
func (d *dualLease) untilEnd(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.Context(), cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// endedBy reports whether the lease has ended, waiting for the watcher
// when err says that a half has: a half's Done is closed before its calls
// report ErrNotHeld, so the wait is short.
func (d *dualLease) endedBy(err error) bool {
	if errors.Is(err, lock.ErrNotHeld) {
		<-d.Done()
	}
	return d.Ended()
}

// Release implements lock.Lease: it releases to, which ends the lease,
// then waits until from's half is released or ctx ends (the release then
// goes on in the background, bounded by CleanupTimeout).
func (d *dualLease) Release(ctx context.Context) error {
	if d.Ended() {
		return d.NotHeld("migrate")
	}
	rctx, cancel := d.untilEnd(ctx)
	defer cancel()
	if err := d.to.Release(rctx); err != nil && d.to.Err() == nil {
		if d.Ended() { // from's half ended while to's release waited (R4)
			return d.NotHeld("migrate")
		}
		return fmt.Errorf("migrate: release %q in to: %w", d.Name(), err)
	}
	<-d.Done()
	if !errors.Is(d.Err(), lock.ErrReleased) {
		return d.NotHeld("migrate") // it had ended otherwise first
	}
	select {
	case <-d.settled:
		if d.settleErr != nil {
			return fmt.Errorf("migrate: %q released in to, but not in from: %w", d.Name(), d.settleErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("migrate: %q released in to; its release in from goes on in the background: %w", d.Name(), ctx.Err())
	}
}

// behind marks a floor's ErrTokensBehind with errBehind: the attempt may
// be made again. Other failures, ErrUnsupported among them (a cluster not
// yet at protocol 4, a Redis floor above 2^52), end the Acquire.
func behind(err error) error {
	if errors.Is(err, lock.ErrTokensBehind) {
		return fmt.Errorf("%w: %w", errBehind, err)
	}
	return err
}
