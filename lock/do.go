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
		return fmt.Errorf("lock %q ended while fn ran: %w", name, lostErr)
	case relErr != nil && !errors.Is(relErr, ErrNotHeld):
		return relErr
	}
	return nil
}

type tokenKey struct{}

func withToken(ctx context.Context, token uint64) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFromContext returns the fencing token of the lease under which Do runs
// fn, and false outside Do.
func TokenFromContext(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tokenKey{}).(uint64)
	return t, ok
}
