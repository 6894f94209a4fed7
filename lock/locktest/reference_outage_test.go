package locktest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/quorumlock/quorumlock/lock"
)

// The reference store's outages: while cut, every call waits for the store
// to come back, for its ctx to end (ErrNoQuorum wrapping the ctx's error,
// R5), or, for Refresh and Release, for its lease to end (ErrNotHeld
// wrapping the cause, R2 and R4). A TTL lease's timer runs on during an
// outage, standing in for the holder's local deadline.

// errLeaseEnded tells a Refresh or Release waiting on a cut store that its
// lease ended meanwhile.
var errLeaseEnded = errors.New("lease ended while waiting for the store")

// outage returns the reference store's Outage option.
func (s *refStore) outage() Option {
	return Outage(func(*testing.T) OutageStore {
		return OutageStore{Cut: s.cutStore, Heal: s.healStore}
	})
}

func (s *refStore) cutStore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cut {
		s.cut, s.healed = true, make(chan struct{})
	}
}

func (s *refStore) healStore() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		s.cut = false
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
			if s.fault == faultCtxOnly {
				err = ctx.Err()
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
