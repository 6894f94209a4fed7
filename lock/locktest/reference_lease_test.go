package locktest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// The reference store's leases, and its outages: while cut, every call waits for the store
// to come back, for its ctx to end (ErrNoQuorum wrapping the ctx's error,
// R5), or, for Refresh and Release, for its lease to end (ErrNotHeld
// wrapping the cause, R2 and R4). A TTL lease's timer runs on during an
// outage, standing in for the holder's local deadline.

// errLeaseEnded tells a Refresh or Release waiting on a cut store that its
// lease ended meanwhile.
var errLeaseEnded = errors.New("lease ended while waiting for the store")

// refSessionTTL is how long the reference store's session leases outlive
// a cut: then their sessions lapse and they end with ErrLost.
const refSessionTTL = 300 * time.Millisecond

// outage returns the reference store's Outage option.
func (s *refStore) outage() Option {
	return Outage(func(*testing.T) OutageStore {
		return OutageStore{Cut: s.cutStore, Heal: s.healStore}
	})
}

func (s *refStore) cutStore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return
	}
	s.cut, s.healed = true, make(chan struct{})
	healed := s.healed
	time.AfterFunc(refSessionTTL, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-healed:
			return
		default:
		}
		s.lapsed = true
		for _, n := range s.names {
			if h := n.holder; h != nil && h.ttl == 0 {
				s.end(h, fmt.Errorf("%w: session lapsed while the store was unreachable", lock.ErrLost))
			}
		}
	})
}

func (s *refStore) healStore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		s.cut, s.lapsed = false, false
		close(s.healed)
	}
}

// reach returns once the store is reachable, with s.mu held (as on entry),
// or an error: ErrNoQuorum if ctx ended first, errLeaseEnded if ended was
// closed first.
func (s *refStore) reach(ctx context.Context, ended <-chan struct{}) error {
	for s.cut {
		healed := s.healed
		s.mu.Unlock()
		var err error
		select {
		case <-healed:
		case <-ctx.Done():
			err = fmt.Errorf("%w: store unreachable: %w", lock.ErrNoQuorum, ctx.Err())
			if s.fault == faultCtxOnly || s.fault == faultLapsedCtxOnly && s.lapsed {
				err = fmt.Errorf("waiting for a new session: %w", ctx.Err())
			}
		case <-ended:
			err = errLeaseEnded
		}
		s.mu.Lock()
		if err != nil {
			return err
		}
	}
	return nil
}

// leaseReach is reach for Refresh and Release of l: the faults that make
// them wait for the store after the lease ended ignore its end.
func (l *refLease) reach(ctx context.Context) error {
	ended := l.done
	switch l.store().fault {
	case faultWaitsStore, faultLyingRefresh, faultOrphanRefresh:
		ended = nil
	}
	err := l.store().reach(ctx, ended)
	if errors.Is(err, errLeaseEnded) {
		return nil // l.err says why
	}
	return err
}

// notHeld is the error of Refresh or Release of l after it ended (R2).
func (l *refLease) notHeld() error {
	if l.store().fault == faultBareNotHeld {
		return lock.ErrNotHeld
	}
	return fmt.Errorf("%w: %w", lock.ErrNotHeld, l.err)
}

// lateRefresh plants faultLyingRefresh and faultOrphanRefresh: a Refresh
// that waited for the store while its lease ended is applied anyway. It
// reports success (lying, for which lateRefresh returns true), or it takes
// the free name for a fresh TTL that no live lease holds (orphan).
func (l *refLease) lateRefresh() (lies bool) {
	s := l.store()
	switch s.fault {
	case faultLyingRefresh:
		return true
	case faultOrphanRefresh:
		if s.free(l.key, l.locker) {
			s.grant(l.locker, l.key, l.name, lock.Options{TTL: l.ttl})
		}
	}
	return false
}

func (l *refLease) Name() string               { return l.name }
func (l *refLease) Token() uint64              { return l.token }
func (l *refLease) Done() <-chan struct{}      { return l.done }
func (l *refLease) Context() context.Context   { return l.ctx }
func (l *refLease) store() *refStore           { return l.locker.s }
func (l *refLease) lockStore() (unlock func()) { l.store().mu.Lock(); return l.store().mu.Unlock }

func (l *refLease) Err() error {
	defer l.lockStore()()
	return l.err
}

func (l *refLease) Refresh(ctx context.Context) error {
	defer l.lockStore()()
	s := l.store()
	wasHeld := l.err == nil
	if err := l.reach(ctx); err != nil {
		return err
	}
	s.expireDue(l.key, time.Now())
	if l.err != nil {
		if wasHeld && l.lateRefresh() {
			return nil
		}
		return l.notHeld()
	}
	if l.ttl > 0 && s.fault != faultRefreshNoop {
		s.arm(l)
	}
	return nil
}

func (l *refLease) Release(ctx context.Context) error {
	defer l.lockStore()()
	s := l.store()
	if err := l.reach(ctx); err != nil {
		return err
	}
	s.expireDue(l.key, time.Now())
	if l.err != nil {
		if n := s.names[l.key]; s.fault == faultStaleRelease && n != nil && n.holder != nil {
			s.end(n.holder, lock.ErrReleased)
			return nil
		}
		return l.notHeld()
	}
	s.end(l, lock.ErrReleased)
	return nil
}
