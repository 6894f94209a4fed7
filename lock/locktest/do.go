package locktest

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// testDo: lock.Do runs fn under the lock, with the token in fn's ctx, and
// releases the lease however fn ends.
func testDo(e *env) {
	const owner = "do-owner"
	name := e.name("do")
	var ran bool
	err := lock.Do(e.ctx(), e.a, name, func(ctx context.Context) error {
		ran = true
		tok, ok := lock.TokenFromContext(ctx)
		assert.True(e.t, ok, "TokenFromContext inside Do")
		assert.Equal(e.t, lock.Info{Name: name, Held: true, Token: tok, Owner: owner}, core(e.inspect(e.b, name)),
			"Inspect inside Do: the token in fn's ctx must be the holder's")
		assert.NoError(e.t, ctx.Err(), "fn's ctx")
		return nil
	}, lock.WithOwner(owner))
	require.NoError(e.t, err, "Do")
	assert.True(e.t, ran, "Do did not run fn")
	e.requireFree(e.b, name, "after Do returned")

	errFn := errors.New("locktest: fn failed")
	err = lock.Do(e.ctx(), e.a, name, func(context.Context) error { return errFn })
	assert.ErrorIs(e.t, err, errFn, "Do must return fn's error")
	e.requireFree(e.b, name, "after Do's fn failed")

	panicked := func() (v any) {
		defer func() { v = recover() }()
		_ = lock.Do(e.ctx(), e.a, name, func(context.Context) error { panic(errFn) })
		return nil
	}()
	assert.Equal(e.t, errFn, panicked, "Do must let fn's panic through")
	e.requireFree(e.b, name, "after Do's fn panicked")

	holder := e.acquire(e.b, name)
	ctx, cancel := context.WithTimeout(e.t.Context(), 100*time.Millisecond)
	defer cancel()
	ran = false
	err = lock.Do(ctx, e.a, name, func(context.Context) error { ran = true; return nil })
	assert.ErrorIs(e.t, err, context.DeadlineExceeded, "Do on a held name until ctx's deadline")
	assert.False(e.t, ran, "Do ran fn without the lock")
	info := e.requireHeldBy(e.a, holder, "after Do gave up")
	assert.Zero(e.t, info.Waiters, "Do's Acquire must not stay queued")
	e.release(holder)

	// A lease that ends while fn runs cancels fn's ctx with the lease's Err
	// as its cause, and Do reports it.
	ttlName := e.name("do-ttl")
	var cause error
	err = lock.Do(e.ctx(), e.a, ttlName, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			cause = context.Cause(ctx)
		case <-time.After(e.cfg.wait):
		}
		return nil
	}, lock.WithTTL(lock.MinTTL))
	assert.ErrorIs(e.t, err, lock.ErrExpired, "Do when the lease expired while fn ran")
	assert.ErrorIs(e.t, cause, lock.ErrExpired, "context.Cause of fn's ctx when the lease expired")
	e.eventually("the expired name is free", func() (bool, string) {
		info, err := e.poll(e.b, ttlName)
		return err == nil && !info.Held, fmtInfo(info, err)
	})
}
