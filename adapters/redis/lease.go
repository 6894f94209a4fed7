package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// lease is one granted claim on one primary. The embedded Core ends once,
// with the reason as its context's cause; it ends under c.mu, together
// with its removal from c.leases.
type lease struct {
	leasecore.Core
	ender leasecore.Ender
	c     *instance
	claim string
	ttl   time.Duration // 0: session lease
	px    time.Duration // the TTL of the lease in Redis
	slot  int           // a permit's slot (permit.Slot)

	dl leasecore.Deadline // the holder's local deadline (I3); fires onDeadline
}

var _ lock.Lease = (*lease)(nil)

// end ends the lease once, and logs why (logEnd) before Done closes, so
// that whoever sees Done closed finds the record; c.mu held (every end of
// the lease happens under c.mu, so nothing ends it between the check and
// the end).
func (l *lease) end(why error) {
	if l.Ended() {
		return
	}
	logEnd(l.c.log, l.c.part, l.Name(), l.Token(), l.c.id, why)
	l.ender.End(why)
	l.dl.Stop()
	delete(l.c.leases, l)
}

// onDeadline runs when the local deadline has passed: the store may expire
// the lease from now on, so the holder must consider it over.
func (l *lease) onDeadline() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.expire()
}

// expire ends the lease at its local deadline; c.mu held. A renewal or
// Refresh that the store received late may have extended it there: the
// renewer deletes it (by token) once the store answers again.
func (l *lease) expire() {
	if l.Ended() {
		return
	}
	if l.ttl == 0 {
		l.c.lapse() // no renewal was acknowledged in time
	}
	l.end(l.deadlineErr())
	l.c.stale = append(l.c.stale, l.staleEntry())
}

// deadlineErr is why a lease ends at its local deadline.
func (l *lease) deadlineErr() error {
	if l.ttl > 0 {
		return fmt.Errorf("%w: TTL %v ran out without Refresh", lock.ErrExpired, l.ttl)
	}
	return fmt.Errorf("%w: session lease not renewed within %v", lock.ErrLost, l.px)
}

// gone ends the lease because the store no longer holds it: ErrExpired if
// a TTL lease's TTL has run out in the store too, else ErrLost.
func (l *lease) gone() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.goneLocked()
}

// goneLocked is gone with c.mu held.
func (l *lease) goneLocked() {
	if l.ttl > 0 && !time.Now().Before(l.dl.At().Add(driftMargin(l.px))) {
		l.end(l.deadlineErr())
		return
	}
	l.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
}

// Release implements lock.Lease. It returns as soon as the store answers,
// ctx ends or the lease ends, whichever is first (see leaseCall); a lease
// that ended before or meanwhile gets an error wrapping lock.ErrNotHeld and
// its end cause, and its copy in the store is deleted by token in the
// background (expire, abandon).
func (l *lease) Release(ctx context.Context) error {
	if err := l.c.openLease(&l.Core); err != nil {
		return err
	}
	defer l.c.leave()
	return l.leaseCall(ctx, "release", releaseScript, []any{l.Token(), l.claim}, l.settleRelease)
}

// settleRelease applies the answer of a release script and delivers the
// Release's outcome on out, before the lease ends (so that a Release that
// sees Done close finds its own outcome first).
func (l *lease) settleRelease(v []any, err error, out chan<- error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	switch {
	case err != nil:
		out <- err
	case v[0] == "ok":
		out <- nil
		l.end(fmt.Errorf("%w: %q", lock.ErrReleased, l.Name()))
	case v[0] == "gone":
		l.goneLocked()
		out <- l.NotHeld("")
	case v[0] == "adopted":
		l.adopted("its Release was refused")
		out <- l.NotHeld("")
	default:
		out <- fmt.Errorf("%w: release answered %v", ErrUnexpectedReply, v)
	}
}

// Refresh implements lock.Lease: it extends the lease in Redis by its TTL
// (a TTL lease's WithTTL, a session lease's SessionTTL) from now, and moves
// the local deadline to the send time of this call + TTL − margin. Like
// Release, it returns once the lease has ended, whatever ctx.
func (l *lease) Refresh(ctx context.Context) error {
	if err := l.c.openLease(&l.Core); err != nil {
		return err
	}
	defer l.c.leave()
	sent := time.Now()
	return l.leaseCall(ctx, "refresh", renewScript, []any{l.Token(), l.px.Milliseconds(), l.claim},
		func(v []any, err error, out chan<- error) {
			if err != nil {
				out <- err
				return
			}
			out <- l.settleRenewal(v, sent)
		})
}

// leaseCall runs one script of a Release or Refresh (op) in the background
// and waits for its outcome (delivered by settle), for ctx to end or for
// the lease to end, whichever is first: a call to an unreachable or stalled
// store must not keep the caller once the lease is over, whatever ctx it
// gave (a Release(context.Background()) deferred by the holder). The call
// goes on without the caller, bounded by opTimeout and by Close, and its
// answer is still applied: a Release that the store executes ends the
// lease with ErrReleased.
func (l *lease) leaseCall(ctx context.Context, op string, s *goredis.Script, args []any,
	settle func(v []any, err error, out chan<- error),
) error {
	c := l.c
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis lock: %s %q: %w", op, l.Name(), err)
	}
	out := make(chan error, 1)
	callCtx, cancel := context.WithTimeout(c.bgCtx, c.opTimeout)
	c.mu.Lock()
	started := c.goPendingLocked(func() {
		defer cancel()
		v, err := c.run(callCtx, s, l.Name(), args...)
		settle(v, err, out)
	})
	c.mu.Unlock()
	if !started { // a call that Shutdown did not wait for: the lease has ended
		cancel()
		return l.NotHeld("")
	}
	select {
	case err := <-out:
		return l.delivered(ctx, op, err)
	case <-l.Done():
		select {
		case err := <-out: // delivered under c.mu just before the end
			return l.delivered(ctx, op, err)
		default:
		}
		return l.NotHeld("")
	case <-ctx.Done():
		select {
		case err := <-out:
			return l.delivered(ctx, op, err)
		default:
		}
		return callErr(ctx, op, l.Name(), errNoAnswer)
	}
}

// delivered returns the outcome err of a Release or Refresh (op) that
// settle delivered. settle delivers under c.mu, then ends the lease:
// taking c.mu once waits for that end, so that Done is closed when a
// successful Release returns.
func (l *lease) delivered(ctx context.Context, op string, err error) error {
	l.c.mu.Lock()
	l.c.mu.Unlock() //nolint:staticcheck // an empty critical section is the point
	if err != nil && !errors.Is(err, lock.ErrNotHeld) {
		return callErr(ctx, op, l.Name(), err)
	}
	return err
}

// settleRenewal applies the answer of a renew script sent at sent: "ok"
// moves the local deadline to sent + TTL − margin (never earlier). An "ok"
// that comes after the deadline has passed saves nothing: the lease is
// over, whatever the store says. "revoked" and "adopted" end the lease
// with ErrRevoked (and let it go) or ErrAdopted.
func (l *lease) settleRenewal(v []any, sent time.Time) error {
	switch v[0] {
	case "ok":
		l.c.mu.Lock()
		held := !l.Ended() && l.dl.Extend(sent.Add(l.px-driftMargin(l.px)))
		if !held {
			l.expire() // the deadline passed before the answer came
		}
		l.c.mu.Unlock()
		if !held {
			return l.NotHeld("")
		}
		return nil
	case "gone":
		l.gone()
		return l.NotHeld("")
	case "revoked", "adopted":
		l.c.mu.Lock()
		if v[0] == "revoked" {
			l.revoked("its renewal was refused")
		} else {
			l.adopted("its renewal was refused")
		}
		l.c.mu.Unlock()
		return l.NotHeld("")
	}
	return fmt.Errorf("%w: renew answered %v", ErrUnexpectedReply, v)
}

// abandon ends l locally, if it has not ended, and has the renewer delete
// it in the store (by token): a Redlock lease that lost its majority gives
// up the rest.
func (c *instance) abandon(l *lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.Ended() {
		return
	}
	l.end(fmt.Errorf("%w: the Redlock lease lost its majority", lock.ErrLost))
	c.stale = append(c.stale, l.staleEntry())
}

// staleEntry is l as a lease to delete in the store by token: the renewer
// tries at least maxStaleTries times and until a copy extended by the last
// renewal sent (px from now) would have expired there by itself.
func (l *lease) staleEntry() staleLease {
	return staleLease{name: l.Name(), token: l.Token(), claim: l.claim, until: time.Now().Add(l.px)}
}

// revoked ends l because Revoke marked it (how: what told the Locker),
// then releases it in the store by token and claim, in the background:
// the holder learns first (I3), and only then does its release hand the
// name on; c.mu held.
func (l *lease) revoked(how string) {
	if l.Ended() {
		return
	}
	l.end(fmt.Errorf("%w: %q token %d (%s)", lock.ErrRevoked, l.Name(), l.Token(), how))
	l.c.letGo(l.staleEntry())
}

// adopted ends l because another Locker adopted it (how: what told this
// Locker); it is not released: the store's lease is the adopter's now;
// c.mu held.
func (l *lease) adopted(how string) {
	if l.Ended() {
		return
	}
	l.end(fmt.Errorf("%w: %q token %d (%s)", lock.ErrAdopted, l.Name(), l.Token(), how))
}
