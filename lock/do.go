package lock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// releaseTimeout bounds the Release that Do makes after fn returns, since
// the caller's ctx may already have ended.
const releaseTimeout = 10 * time.Second

// Do acquires name, runs fn under a context that is cancelled when ctx ends
// or the lease is lost, and then releases the lease.
//
// fn should stop writing to the protected resource when its ctx is
// cancelled, and should pass the token (see TokenFromContext) to that
// resource. Do returns the Acquire error, or fn's error, or, if fn succeeded
// but the lease ended before fn returned, the lease's Err: the work may have
// overlapped another holder and the caller must treat it as not done under
// the lock. A Release error after a successful fn is returned too, unless it
// is ErrNotHeld. If fn panics, Do releases the lease and lets the panic go on.
func Do(ctx context.Context, l Locker, name string, fn func(ctx context.Context) error, opts ...Option) error {
	lease, err := l.Acquire(ctx, name, opts...)
	if err != nil {
		return err
	}
	return under(ctx, "lock", lease, func(ctx context.Context) error { return fn(ctx) })
}

// Lead campaigns in election with value, runs fn as the leader, and then
// resigns, with the error rules of Do: fn's ctx is cancelled when ctx ends
// or the term ends (its cause is the term's Err), and if the term ended
// before fn returned, Lead returns the term's Err. fn's ctx carries the
// term's token (TokenFromContext); fn may Proclaim through t.
func Lead(ctx context.Context, e Elector, election, value string, fn func(ctx context.Context, t Term) error, opts ...Option) error {
	term, err := e.Campaign(ctx, election, value, opts...)
	if err != nil {
		return err
	}
	return under(ctx, "term of election", term, func(ctx context.Context) error { return fn(ctx, term) })
}

// DoPermit acquires a permit of the semaphore name of limit, runs fn
// holding it, and then releases it, with the error rules of Do. fn gets
// the permit for its slot (Permit.Slot), which a resource fenced per slot
// needs besides the token.
func DoPermit(ctx context.Context, s Semaphores, name string, limit int, fn func(ctx context.Context, p Permit) error, opts ...Option) error {
	permit, err := s.AcquirePermit(ctx, name, limit, opts...)
	if err != nil {
		return err
	}
	return under(ctx, "permit of semaphore", permit, func(ctx context.Context) error { return fn(ctx, permit) })
}

// DoRead runs fn holding a read lease of name, with the error rules of Do.
func DoRead(ctx context.Context, rw RWLockers, name string, fn func(ctx context.Context) error, opts ...Option) error {
	lease, err := rw.AcquireRead(ctx, name, opts...)
	if err != nil {
		return err
	}
	return under(ctx, "read lock", lease, fn)
}

// DoWrite runs fn holding the write lease of name, with the error rules of
// Do.
func DoWrite(ctx context.Context, rw RWLockers, name string, fn func(ctx context.Context) error, opts ...Option) error {
	lease, err := rw.AcquireWrite(ctx, name, opts...)
	if err != nil {
		return err
	}
	return under(ctx, "write lock", lease, fn)
}

// under runs fn under lease and releases it: the body of Do and of the
// helpers above. what names the lease in the error of one that ended
// while fn ran.
func under(ctx context.Context, what string, lease Lease, fn func(ctx context.Context) error) error {
	fnCtx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(lease.Context(), func() { cancel(context.Cause(lease.Context())) })
	returned := false
	defer func() {
		if !returned { // fn panicked or called runtime.Goexit: release, and let it unwind
			stop()
			cancel(nil)
			relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer relCancel()
			_ = lease.Release(relCtx)
		}
	}()
	fnErr := fn(withToken(fnCtx, lease.Token()))
	returned = true
	stop()
	cancel(nil)

	// Check the lease before releasing: Release makes Err non-nil.
	lostErr := lease.Err()
	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer relCancel()
	relErr := lease.Release(relCtx)

	switch {
	case fnErr != nil:
		return fnErr
	case lostErr != nil:
		return fmt.Errorf("%s %q ended while fn ran: %w", what, lease.Name(), lostErr)
	case relErr != nil && !errors.Is(relErr, ErrNotHeld):
		return relErr
	}
	return nil
}

type tokenKey struct{}

func withToken(ctx context.Context, token uint64) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFromContext returns the fencing token of the lease under which Do
// (or Lead, DoPermit, DoRead, DoWrite) runs fn, and false outside them.
func TokenFromContext(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tokenKey{}).(uint64)
	return t, ok
}
