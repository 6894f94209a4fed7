package node

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
)

// lease is a granted claim held by a client. Its core's context is
// cancelled, with the reason as cause, when the lease ends; that is its only
// state change.
//
// A TTL lease's local deadline is a plain timer rather than a
// leasecore.Deadline: a successful Refresh resets it to the Refresh's send
// time + TTL − margin, whichever way that moves it, and revives it if it
// passed but has not fired yet; Deadline only moves later and refuses once
// passed.
type lease struct {
	leasecore.Core
	ender leasecore.Ender
	c     *client
	ttl   time.Duration // 0: session lease
	timer *time.Timer   // TTL leases: the holder's local deadline
}

var _ lock.Lease = (*lease)(nil)

// newLease registers a lease granted at base (the send time of the request
// that got it, or the local apply time of a hand-off); c.mu held.
func (c *client) newLease(name string, token uint64, ttl time.Duration, base time.Time) *lease {
	l := &lease{c: c, ttl: ttl}
	l.Core, l.ender = leasecore.New(name, token)
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
	if !l.ender.End(why) {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(l.c.leases, leaseKey{l.Name(), l.Token()})
}

// Release implements lock.Lease.
func (l *lease) Release(ctx context.Context) error {
	if l.Ended() {
		return l.NotHeld("")
	}
	res, err := l.c.request(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: req, Name: l.Name(), Token: l.Token()}}}
	})
	if err != nil {
		return err
	}
	return l.settle(res.GetCode())
}

// Refresh implements lock.Lease: a TTL lease's local deadline moves to the
// send time of this Refresh plus the TTL.
func (l *lease) Refresh(ctx context.Context) error {
	if l.Ended() {
		return l.NotHeld("")
	}
	sent := time.Now()
	res, err := l.c.request(ctx, func(req *fsmpb.Request) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: req, Name: l.Name(), Token: l.Token()}}}
	})
	if err != nil {
		return err
	}
	if res.GetCode() == fsmpb.Code_CODE_OK && l.ttl > 0 {
		l.c.mu.Lock()
		if !l.Ended() {
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
		return l.NotHeld("")
	default:
		// UNKNOWN_SESSION: the request's session expired, but the lease may
		// live on (a TTL lease survives its session): report, don't guess.
		return codeErr(code, l.Name())
	}
}
