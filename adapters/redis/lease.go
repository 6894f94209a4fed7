package redis

import (
	"context"
	"fmt"
	"time"

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

	dl leasecore.Deadline // the holder's local deadline (I3); fires onDeadline
}

var _ lock.Lease = (*lease)(nil)

// end ends the lease once; c.mu held.
func (l *lease) end(why error) {
	if !l.ender.End(why) {
		return
	}
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
	l.end(l.deadlineErr())
	l.c.stale = append(l.c.stale, staleLease{name: l.Name(), token: l.Token()})
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
	if l.ttl > 0 && !time.Now().Before(l.dl.At().Add(driftMargin(l.px))) {
		l.end(l.deadlineErr())
		return
	}
	l.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
}

// Release implements lock.Lease.
func (l *lease) Release(ctx context.Context) error {
	if err := l.c.openLease(&l.Core); err != nil {
		return err
	}
	defer l.c.calls.Done()
	v, err := l.c.run(ctx, releaseScript, l.Name(), l.Token())
	if err != nil {
		return ctxErr(ctx, "release", l.Name(), err)
	}
	switch v[0] {
	case "ok":
		l.c.mu.Lock()
		l.end(fmt.Errorf("%w: %q", lock.ErrReleased, l.Name()))
		l.c.mu.Unlock()
		return nil
	case "gone":
		l.gone()
		return l.NotHeld("")
	}
	return fmt.Errorf("%w: release answered %v", ErrUnexpectedReply, v)
}

// Refresh implements lock.Lease: it extends the lease in Redis by its TTL
// (a TTL lease's WithTTL, a session lease's SessionTTL) from now, and moves
// the local deadline to the send time of this call + TTL − margin.
func (l *lease) Refresh(ctx context.Context) error {
	if err := l.c.openLease(&l.Core); err != nil {
		return err
	}
	defer l.c.calls.Done()
	sent := time.Now()
	v, err := l.c.run(ctx, renewScript, l.Name(), l.Token(), l.px.Milliseconds())
	if err != nil {
		return ctxErr(ctx, "refresh", l.Name(), err)
	}
	return l.settleRenewal(v, sent)
}

// settleRenewal applies the answer of a renew script sent at sent: "ok"
// moves the local deadline to sent + TTL − margin (never earlier). An "ok"
// that comes after the deadline has passed saves nothing: the lease is
// over, whatever the store says.
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
	c.stale = append(c.stale, staleLease{name: l.Name(), token: l.Token()})
}
