package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
)

// Revoke implements lock.Revoker. In Dual it revokes in the store whose
// token a Dual lease carries (to with FencedTokens, from with FromTokens),
// then, if that store holds no lease with token, in the other: an old or
// new replica's lease (DESIGN.md, "Operations").
func (l *Locker) Revoke(ctx context.Context, name string, token uint64) error {
	ctx, done, err := l.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	revoke := func(s lock.Locker) error {
		r, ok := s.(lock.Revoker)
		if !ok {
			return fmt.Errorf("migrate: revoke: %T: %w", s, lock.ErrUnsupported)
		}
		return r.Revoke(ctx, name, token)
	}
	switch l.cfg.Phase {
	case FromOnly:
		return l.closedOr(revoke(l.from))
	case ToOnly:
		return l.closedOr(revoke(l.to))
	}
	first, second := l.to, l.from
	if l.cfg.Tokens == FromTokens {
		first, second = l.from, l.to
	}
	if err := revoke(first); !errors.Is(err, lock.ErrNotHeld) {
		return l.closedOr(err)
	}
	return l.closedOr(revoke(second))
}

// List implements lock.Lister in FromOnly and ToOnly; in Dual it returns
// ErrUnsupported (list each store directly).
func (l *Locker) List(ctx context.Context, prefix string, opts ...lock.ListOption) (lock.Page, error) {
	s, err := l.single("list")
	if err != nil {
		return lock.Page{}, err
	}
	ls, ok := s.(lock.Lister)
	if !ok {
		return lock.Page{}, fmt.Errorf("migrate: list: %T: %w", s, lock.ErrUnsupported)
	}
	ctx, done, err := l.begin(ctx)
	if err != nil {
		return lock.Page{}, err
	}
	defer done()
	p, err := ls.List(ctx, prefix, opts...)
	return p, l.closedOr(err)
}

// Adopt implements lock.Adopter in FromOnly and ToOnly; in Dual it returns
// ErrUnsupported (a Dual lease is two leases).
func (l *Locker) Adopt(ctx context.Context, name string, token uint64) (lock.Lease, error) {
	s, err := l.single("adopt")
	if err != nil {
		return nil, err
	}
	a, ok := s.(lock.Adopter)
	if !ok {
		return nil, fmt.Errorf("migrate: adopt: %T: %w", s, lock.ErrUnsupported)
	}
	ctx, done, err := l.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	le, err := a.Adopt(ctx, name, token)
	if err != nil {
		return nil, l.closedOr(err)
	}
	return l.keep(le)
}

// single is the one store of a FromOnly or ToOnly Locker.
func (l *Locker) single(op string) (lock.Locker, error) {
	switch l.cfg.Phase {
	case FromOnly:
		return l.from, nil
	case ToOnly:
		return l.to, nil
	}
	return nil, fmt.Errorf("migrate: %s in phase %v: %w", op, l.cfg.Phase, lock.ErrUnsupported)
}
