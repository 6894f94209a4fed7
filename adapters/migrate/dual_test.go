package migrate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// dualPair is a Dual Locker with direct Lockers on each of its stores, for
// looking at (and interfering with) one half.
type dualPair struct {
	l        *migrate.Locker
	from, to lock.Locker // other clients of the two stores
}

func newDualPair(t *testing.T, tokens migrate.Tokens) dualPair {
	from, to := redisStore(t), embeddedStore(t, 1)
	return dualPair{
		l:    newMigrate(t, from, to, migrate.Config{Phase: migrate.Dual, Tokens: tokens}),
		from: from.open(t), to: to.open(t),
	}
}

func TestNew_Invalid(t *testing.T) {
	from, to := redisStore(t), embeddedStore(t, 1)
	f, o := from.open(t), to.open(t)
	for _, tc := range []struct {
		name     string
		from, to lock.Locker
		cfg      migrate.Config
		want     error
	}{
		{"no phase", f, o, migrate.Config{}, lock.ErrInvalidOption},
		{"unknown phase", f, o, migrate.Config{Phase: 9}, lock.ErrInvalidOption},
		{"unknown tokens", f, o, migrate.Config{Phase: migrate.Dual, Tokens: 7}, lock.ErrInvalidOption},
		{"negative cleanup", f, o, migrate.Config{Phase: migrate.Dual, CleanupTimeout: -time.Second}, lock.ErrInvalidOption},
		{"no from", nil, o, migrate.Config{Phase: migrate.Dual}, lock.ErrInvalidOption},
		{"no to", f, nil, migrate.Config{Phase: migrate.Dual}, lock.ErrInvalidOption},
		{"one Locker twice", f, f, migrate.Config{Phase: migrate.Dual, Tokens: migrate.FromTokens}, lock.ErrInvalidOption},
		// A Locker whose type hides FloorToken cannot raise its tokens.
		{"fenced without floors", struct{ lock.Locker }{f}, o, migrate.Config{Phase: migrate.Dual}, lock.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := migrate.New(tc.from, tc.to, tc.cfg)
			require.ErrorIs(t, err, tc.want)
		})
	}
	p, err := migrate.ParsePhase("dual")
	require.NoError(t, err)
	assert.Equal(t, migrate.Dual, p)
	_, err = migrate.ParsePhase("both")
	assert.ErrorIs(t, err, lock.ErrInvalidOption)
}

// TestDual_CancelledInToLeavesNothing: a Dual Acquire granted in from and
// then cancelled while it waits in to releases its grant in from before it
// returns.
func TestDual_CancelledInToLeavesNothing(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	holder, err := p.to.Acquire(ctxFor(t, 10*time.Second), "job")
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = p.l.Acquire(ctx, "job")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, lock.ErrNoQuorum, "queued behind a holder: ctx's error alone (R5)")
	assert.True(t, free(t, p.from, "job"), "the grant in from must be released before Acquire returns")
	require.NoError(t, holder.Release(ctxFor(t, 10*time.Second)))
}

// TestDual_TryHeldInToLeavesNothing: a TryAcquire that finds to held
// answers ErrHeld and leaves from free.
func TestDual_TryHeldInToLeavesNothing(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	holder, err := p.to.Acquire(ctxFor(t, 10*time.Second), "job")
	require.NoError(t, err)
	_, err = p.l.TryAcquire(ctxFor(t, 10*time.Second), "job")
	require.ErrorIs(t, err, lock.ErrHeld)
	assert.True(t, free(t, p.from, "job"), "the grant in from must be released")
	require.NoError(t, holder.Release(ctxFor(t, 10*time.Second)))
}

// TestDual_HalfEndsLease: when one half ends (here from's, revoked in its
// store), the Dual lease ends with that cause and the other half is
// released.
func TestDual_HalfEndsLease(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, 30*time.Second)
	lease, err := p.l.Acquire(ctx, "job")
	require.NoError(t, err)
	info, err := p.from.Inspect(ctx, "job")
	require.NoError(t, err)
	require.True(t, info.Held)
	require.NoError(t, p.from.(lock.Revoker).Revoke(ctx, "job", info.Token))

	select {
	case <-lease.Done():
	case <-ctx.Done():
		t.Fatal("the Dual lease did not end with its half in from")
	}
	assert.ErrorIs(t, lease.Err(), lock.ErrRevoked, "the cause is the half's")
	eventually(t, 10*time.Second, "to's half released", func() bool { return free(t, p.to, "job") })
	assert.ErrorIs(t, lease.Refresh(ctx), lock.ErrNotHeld)
	err = lease.Release(ctx)
	assert.ErrorIs(t, err, lock.ErrNotHeld)
	assert.ErrorIs(t, err, lock.ErrRevoked, "R2: the cause of the end")
}

// TestDual_ReleaseFreesBoth: once Release returns nil, neither store holds
// the name, and the lease ended with ErrReleased.
func TestDual_ReleaseFreesBoth(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, 30*time.Second)
	lease, err := p.l.Acquire(ctx, "job", lock.WithTTL(time.Minute), lock.WithOwner("worker-7"))
	require.NoError(t, err)
	for side, l := range map[string]lock.Locker{"from": p.from, "to": p.to} {
		info, err := l.Inspect(ctx, "job")
		require.NoError(t, err)
		assert.Equal(t, lock.KindTTL, info.Kind, "%s: WithTTL passed through", side)
		assert.Equal(t, "worker-7", info.Owner, "%s: WithOwner passed through", side)
	}
	require.NoError(t, lease.Refresh(ctx))
	require.NoError(t, lease.Release(ctx))
	assert.ErrorIs(t, lease.Err(), lock.ErrReleased)
	assert.True(t, free(t, p.from, "job"), "from")
	assert.True(t, free(t, p.to, "job"), "to")
	assert.ErrorIs(t, lease.Release(ctx), lock.ErrNotHeld)
}

// TestDual_Close: Close ends the Dual leases and blocked calls; later calls
// answer ErrClosed; both stores are left free.
func TestDual_Close(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, 30*time.Second)
	held, err := p.l.Acquire(ctx, "held")
	require.NoError(t, err)
	blocker, err := p.to.Acquire(ctx, "blocked")
	require.NoError(t, err)
	blocked := make(chan error, 1)
	go func() {
		_, err := p.l.Acquire(ctx, "blocked")
		blocked <- err
	}()
	eventually(t, 10*time.Second, "the blocked Acquire holds from", func() bool { return !free(t, p.from, "blocked") })

	require.NoError(t, p.l.Close())
	require.ErrorIs(t, <-blocked, lock.ErrClosed)
	assert.ErrorIs(t, held.Err(), lock.ErrReleased)
	for _, name := range []string{"held", "blocked"} {
		assert.True(t, free(t, p.from, name), "from %s", name)
	}
	assert.True(t, free(t, p.to, "held"))
	_, err = p.l.Acquire(ctx, "x")
	assert.ErrorIs(t, err, lock.ErrClosed)
	require.NoError(t, p.l.Close(), "idempotent")
	require.NoError(t, blocker.Release(ctx))
}

// TestDual_InspectMerges: Held if either store holds the name; the holder
// as seen by the store whose token a Dual lease carries; waiters summed.
func TestDual_InspectMerges(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, 30*time.Second)
	info, err := p.l.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.False(t, info.Held)

	onlyTo, err := p.to.Acquire(ctx, "job", lock.WithOwner("new code"))
	require.NoError(t, err)
	info, err = p.l.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.True(t, info.Held, "held in to only")
	assert.Equal(t, "new code", info.Owner)
	assert.Equal(t, onlyTo.Token(), info.Token)
	require.NoError(t, onlyTo.Release(ctx))

	lease, err := p.l.Acquire(ctx, "job")
	require.NoError(t, err)
	info, err = p.l.Inspect(ctx, "job")
	require.NoError(t, err)
	assert.Equal(t, lease.Token(), info.Token, "a Dual holder sees its own token")
	require.NoError(t, lease.Release(ctx))
	_, err = p.l.List(ctx, "")
	assert.True(t, errors.Is(err, lock.ErrUnsupported), "List in Dual: %v", err)
}

// TestDual_FromBehindRetries: when to's tokens for a name are further
// ahead of ZooKeeper's zxid (from) than one FloorToken writes it up
// (zookeeper.MaxFloorCatchUp), a Dual TryAcquire fails with ErrUnsupported
// and leaves nothing held, while an Acquire retries — each attempt moves
// ZooKeeper's zxid on faster than to's tokens — and gets a token that the
// old code's next grant still exceeds.
func TestDual_FromBehindRetries(t *testing.T) {
	zk := store{name: "zookeeper"}
	standalone := testserver.StartZooKeeper(t, testserver.ZKOptions{}) // zxids from 0
	zk.open = func(t *testing.T) lock.Locker {
		l, err := zookeeper.New(zookeeper.Config{Servers: []string{standalone.Addr()}, SessionTimeout: 4 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	emb := embeddedStore(t, 1)
	l := newMigrate(t, zk, emb, migrate.Config{Phase: migrate.Dual})
	old, newCode := zk.open(t), emb.open(t)
	ctx := ctxFor(t, time.Minute)

	// Put to's tokens for "job" well ahead of ZooKeeper's zxid.
	probe, err := old.Acquire(ctx, "job")
	require.NoError(t, err)
	require.NoError(t, probe.Release(ctx))
	require.NoError(t, newCode.(lock.TokenFloorer).FloorToken(ctx, "job", probe.Token()+1000))

	_, err = l.TryAcquire(ctx, "job")
	require.ErrorIs(t, err, lock.ErrUnsupported, "one attempt: from cannot be raised that far")
	assert.True(t, free(t, old, "job"), "nothing held in from")
	assert.True(t, free(t, newCode, "job"), "nothing held in to")

	lease, err := l.Acquire(ctx, "job")
	require.NoError(t, err, "an Acquire retries until from has caught up")
	assert.Greater(t, lease.Token(), probe.Token()+1000, "to's token")
	require.NoError(t, lease.Release(ctx))
	next, err := old.Acquire(ctx, "job")
	require.NoError(t, err)
	assert.Greater(t, next.Token(), lease.Token(), "the old code's next grant is above the Dual lease's token")
	require.NoError(t, next.Release(ctx))
}

// TestDual_UnsupportedFloorEndsAcquire: a floor that a store refuses for
// good (ErrUnsupported without ErrTokensBehind: here a Redis floor above
// 2^52) ends a Dual Acquire at once with that error, leaving nothing
// held; only ErrTokensBehind is worth another attempt.
func TestDual_UnsupportedFloorEndsAcquire(t *testing.T) {
	p := newDualPair(t, migrate.FencedTokens)
	ctx := ctxFor(t, time.Minute)
	// The embedded store's next token is above 2^53: raising Redis (from)
	// above it is more than its Lua numbers can carry.
	require.NoError(t, p.to.(lock.TokenFloorer).FloorToken(ctx, "job", 1<<53))

	_, err := p.l.Acquire(ctx, "job")
	require.ErrorIs(t, err, lock.ErrUnsupported)
	assert.NotErrorIs(t, err, lock.ErrTokensBehind)
	assert.NoError(t, ctx.Err(), "returned at once, not by retrying until ctx ended")
	assert.True(t, free(t, p.from, "job"), "nothing held in from")
	assert.True(t, free(t, p.to, "job"), "nothing held in to")
}
