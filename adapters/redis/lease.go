package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// lease is one granted claim. Its context is cancelled, with the reason as
// cause, when the lease ends; that is its only state change. Mutable fields
// are guarded by c.mu.
type lease struct {
	c      *instance
	name   string
	claim  string
	token  uint64
	ttl    time.Duration // 0: session lease
	px     time.Duration // the TTL of the lease in Redis
	ctx    context.Context
	cancel context.CancelCauseFunc

	deadline time.Time   // the holder's local deadline
	timer    *time.Timer // fires at deadline
}

var _ lock.Lease = (*lease)(nil)

func (l *lease) Name() string             { return l.name }
func (l *lease) Token() uint64            { return l.token }
func (l *lease) Done() <-chan struct{}    { return l.ctx.Done() }
func (l *lease) Context() context.Context { return l.ctx }
func (l *lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// end ends the lease once; c.mu held.
func (l *lease) end(why error) {
	if l.ctx.Err() != nil {
		return
	}
	l.cancel(why)
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(l.c.leases, l)
}

// extend moves the local deadline to base + px − margin, where base is the
// send time of an acknowledged renewal or Refresh; c.mu held.
func (l *lease) extend(base time.Time) {
	d := base.Add(l.px - driftMargin(l.px))
	if l.ctx.Err() != nil || !d.After(l.deadline) {
		return
	}
	l.deadline = d
	l.timer.Reset(time.Until(d))
}

// onDeadline runs when the timer fires: the store may expire the lease
// from now on, so the holder must consider it over.
func (l *lease) onDeadline() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	if d := time.Until(l.deadline); d > 0 { // extended while this call waited for mu
		l.timer.Reset(d)
		return
	}
	if l.ttl > 0 {
		l.end(fmt.Errorf("%w: TTL %v ran out without Refresh", lock.ErrExpired, l.ttl))
	} else {
		l.end(fmt.Errorf("%w: session lease not renewed within %v", lock.ErrLost, l.px))
	}
	// A renewal or Refresh that the store received late may have extended
	// it there: delete it (by token) once the store answers again.
	l.c.stale = append(l.c.stale, staleLease{name: l.name, token: l.token})
}

// gone ends the lease because the store no longer holds it.
func (l *lease) gone() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.ttl > 0 && !time.Now().Before(l.deadline.Add(driftMargin(l.px))) {
		l.end(fmt.Errorf("%w: TTL %v ran out without Refresh", lock.ErrExpired, l.ttl))
		return
	}
	l.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
}

func (l *lease) notHeld() error {
	return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, l.name, l.Err())
}

// Release implements lock.Lease.
func (l *lease) Release(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return l.notHeld()
	}
	if err := l.c.enter(); err != nil {
		return err
	}
	defer l.c.calls.Done()
	v, err := l.c.run(ctx, releaseScript, l.name, l.token)
	if err != nil {
		return ctxErr(ctx, "release", l.name, err)
	}
	switch v[0] {
	case "ok":
		l.c.mu.Lock()
		l.end(fmt.Errorf("%w: %q", lock.ErrReleased, l.name))
		l.c.mu.Unlock()
		return nil
	case "gone":
		l.gone()
		return l.notHeld()
	}
	return fmt.Errorf("%w: release answered %v", ErrUnexpectedReply, v)
}

// Refresh implements lock.Lease: it extends the lease in Redis by its TTL
// (a TTL lease's WithTTL, a session lease's SessionTTL) from now, and moves
// the local deadline to the send time of this call + TTL − margin.
func (l *lease) Refresh(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return l.notHeld()
	}
	if err := l.c.enter(); err != nil {
		return err
	}
	defer l.c.calls.Done()
	sent := time.Now()
	v, err := l.c.run(ctx, renewScript, l.name, l.token, l.px.Milliseconds())
	if err != nil {
		return ctxErr(ctx, "refresh", l.name, err)
	}
	return l.settleRenewal(v, sent)
}

// settleRenewal applies the answer of a renew script sent at sent.
func (l *lease) settleRenewal(v []any, sent time.Time) error {
	switch v[0] {
	case "ok":
		l.c.mu.Lock()
		l.extend(sent)
		ended := l.ctx.Err() != nil
		l.c.mu.Unlock()
		if ended { // the deadline passed before the answer came
			return l.notHeld()
		}
		return nil
	case "gone":
		l.gone()
		return l.notHeld()
	}
	return fmt.Errorf("%w: renew answered %v", ErrUnexpectedReply, v)
}

// abandon ends l locally, if it has not ended, and has the renewer delete
// it in the store (by token): a Redlock lease that lost its majority gives
// up the rest.
func (c *instance) abandon(l *lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	l.end(fmt.Errorf("%w: the Redlock lease lost its majority", lock.ErrLost))
	c.stale = append(c.stale, staleLease{name: l.name, token: l.token})
}
