package node

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// lease is a granted claim held by a client. Its context is cancelled, with
// the reason as cause, when the lease ends; that is its only state change.
type lease struct {
	c      *client
	name   string
	token  uint64
	ttl    time.Duration // 0: session lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer // TTL leases: the holder's local deadline
}

var _ lock.Lease = (*lease)(nil)

// newLease registers a lease granted at base (the send time of the request
// that got it, or the local apply time of a hand-off); c.mu held.
func (c *client) newLease(name string, token uint64, ttl time.Duration, base time.Time) *lease {
	l := &lease{c: c, name: name, token: token, ttl: ttl}
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	if ttl > 0 {
		l.timer = time.AfterFunc(time.Until(base.Add(ttl-driftMargin(ttl))), l.expireLocally)
	}
	c.leases[leaseKey{name, token}] = l
	return l
}

func (l *lease) expireLocally() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.end(lock.ErrExpired)
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
	delete(l.c.leases, leaseKey{l.name, l.token})
}

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

// Release implements lock.Lease.
func (l *lease) Release(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, l.name, l.Err())
	}
	res, err := l.c.request(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: req, Name: l.name, Token: l.token}}}
	})
	if err != nil {
		return err
	}
	return l.settle(res.GetCode())
}

// Refresh implements lock.Lease: a TTL lease's local deadline moves to the
// send time of this Refresh plus the TTL.
func (l *lease) Refresh(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, l.name, l.Err())
	}
	sent := time.Now()
	res, err := l.c.request(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: req, Name: l.name, Token: l.token}}}
	})
	if err != nil {
		return err
	}
	if res.GetCode() == fsmpb.Code_CODE_OK && l.ttl > 0 {
		l.c.mu.Lock()
		if l.ctx.Err() == nil {
			l.timer.Reset(time.Until(sent.Add(l.ttl - driftMargin(l.ttl))))
		}
		l.c.mu.Unlock()
	}
	return l.settle(res.GetCode())
}

// settle maps a Release or Refresh result. NOT_HELD means the store ended
// the lease; if no event has ended it locally yet, it ends now.
func (l *lease) settle(code fsmpb.Code) error {
	switch code {
	case fsmpb.Code_CODE_OK:
		return nil
	case fsmpb.Code_CODE_NOT_HELD:
		l.c.mu.Lock()
		l.end(fmt.Errorf("%w: the store no longer holds it", lock.ErrLost))
		l.c.mu.Unlock()
		return fmt.Errorf("%w: %q: %w", lock.ErrNotHeld, l.name, l.Err())
	default:
		// UNKNOWN_SESSION: the request's session expired, but the lease may
		// live on (a TTL lease survives its session): report, don't guess.
		return codeErr(code, l.name)
	}
}
