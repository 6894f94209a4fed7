package redis_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// queued is one Acquire started in the background.
type queued struct {
	lease lock.Lease
	err   error
}

// goAcquire starts l.Acquire(ctx, name, opts...) and returns where its
// outcome arrives.
func goAcquire(ctx context.Context, l lock.Locker, name string, opts ...lock.Option) <-chan queued {
	out := make(chan queued, 1)
	go func() {
		lease, err := l.Acquire(ctx, name, opts...)
		out <- queued{lease, err}
	}()
	return out
}

// TestInspect_Story (issue 13, item 1): Inspect tells kind, age, holder and
// node of the lease and the queue in order with each waiter's holder,
// node, owner and time waited; WithQueueLimit bounds the queue but not the
// count.
func TestInspect_Story(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	a := newNodeLocker(t, srv.Addr(), "node-a", 2*time.Second, nil)
	b := newNodeLocker(t, srv.Addr(), "node-b", 2*time.Second, nil)
	c := newNodeLocker(t, srv.Addr(), "node-c", 2*time.Second, nil)
	ctx := testCtx(t)
	name := "story"

	info, err := b.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name}, info, "a name never locked")

	held, err := a.Acquire(ctx, name, lock.WithOwner("job 1"))
	require.NoError(t, err)
	info, err = b.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.KindSession, info.Kind)
	assert.Equal(t, "node-a", info.Node)
	assert.Zero(t, info.ExpiresIn, "a session lease has no ExpiresIn")
	holderA := info.Holder
	require.NotEmpty(t, holderA)
	other, err := a.Acquire(ctx, name+"-2")
	require.NoError(t, err)
	assert.Equal(t, holderA, holderOf(t, b, name+"-2"), "two leases of one Locker have one Holder")
	require.NoError(t, other.Release(ctx))

	// Since grows with the grant's age, on the server's clock.
	first := info.Since
	assert.GreaterOrEqual(t, first, time.Duration(0))
	deadline := time.Now().Add(10 * time.Second)
	for info.Since < first+50*time.Millisecond {
		require.False(t, time.Now().After(deadline), "Since did not grow: %v", info.Since)
		<-time.After(10 * time.Millisecond)
		info, err = b.Inspect(ctx, name)
		require.NoError(t, err)
	}

	waitB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	outB := goAcquire(waitB, b, name, lock.WithOwner("waiter b\nline 2"))
	waitWaiters(t, a, name, 1)
	outC := goAcquire(ctx, c, name, lock.WithOwner("waiter c"))
	waitWaiters(t, a, name, 2)

	info, err = a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, 2, info.Waiters)
	require.Len(t, info.Queue, 2)
	assert.Equal(t, "node-b", info.Queue[0].Node)
	assert.Equal(t, "waiter b\nline 2", info.Queue[0].Owner, "an owner with a newline survives")
	assert.Equal(t, "node-c", info.Queue[1].Node)
	assert.Equal(t, "waiter c", info.Queue[1].Owner)
	assert.NotEmpty(t, info.Queue[0].Holder)
	assert.NotEqual(t, info.Queue[0].Holder, info.Queue[1].Holder)
	assert.NotEqual(t, holderA, info.Queue[0].Holder)
	assert.GreaterOrEqual(t, info.Queue[0].Waited, info.Queue[1].Waited, "the first waiter has waited longest")
	assert.GreaterOrEqual(t, info.Queue[1].Waited, time.Duration(0))

	info, err = a.Inspect(ctx, name, lock.WithQueueLimit(1))
	require.NoError(t, err)
	assert.Equal(t, 2, info.Waiters, "Waiters counts them all")
	require.Len(t, info.Queue, 1)
	assert.Equal(t, "node-b", info.Queue[0].Node)
	info, err = a.Inspect(ctx, name, lock.WithQueueLimit(0))
	require.NoError(t, err)
	assert.Equal(t, 2, info.Waiters)
	assert.Empty(t, info.Queue)
	_, err = a.Inspect(ctx, name, lock.WithQueueLimit(lock.MaxQueueLimit+1))
	require.ErrorIs(t, err, lock.ErrInvalidOption)

	// The first waiter leaves: the second is now first.
	cancelB()
	require.ErrorIs(t, (<-outB).err, context.Canceled)
	info, err = a.Inspect(ctx, name)
	require.NoError(t, err)
	require.Len(t, info.Queue, 1)
	assert.Equal(t, "node-c", info.Queue[0].Node)

	// A TTL lease, held by the waiter that got it.
	require.NoError(t, held.Release(ctx))
	r := <-outC
	require.NoError(t, r.err)
	require.NoError(t, r.lease.Release(ctx))
	ttlLease, err := c.Acquire(ctx, name, lock.WithTTL(time.Minute))
	require.NoError(t, err)
	info, err = a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.KindTTL, info.Kind)
	assert.Equal(t, "node-c", info.Node)
	assert.Positive(t, info.ExpiresIn)
	assert.Less(t, info.Since, time.Minute)
	assert.Empty(t, info.Queue)
	require.NoError(t, ttlLease.Release(ctx))
	info, err = a.Inspect(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name}, info, "not held: no kind, age, holder or node")
}

// TestConfig_NodeDefault: Config.Node defaults to the host name.
func TestConfig_NodeDefault(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	l := newLocker(t, srv.Addr(), time.Second)
	lease, err := l.Acquire(testCtx(t), "node-default")
	require.NoError(t, err)
	info, err := l.Inspect(testCtx(t), "node-default")
	require.NoError(t, err)
	assert.Equal(t, host, info.Node)
	require.NoError(t, lease.Release(testCtx(t)))
}

// TestQueue_NoLeftovers (I4, issue 13): a waiter's details leave with it,
// whether it withdraws or is granted (pruned as dead: TestDeadWaiterPruned),
// also while others still wait; once the name is free and nobody waits,
// only its fence counter is left.
func TestQueue_NoLeftovers(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	raw := rawClient(t, srv.Addr())
	a := newLocker(t, srv.Addr(), time.Second)
	b := newLocker(t, srv.Addr(), time.Second)
	ctx := testCtx(t)
	name := "leftovers"
	details := func() []string {
		fields, err := raw.HKeys(ctx, redis.DefaultPrefix+"claims:"+name).Result()
		require.NoError(t, err)
		return fields
	}

	held, err := a.Acquire(ctx, name)
	require.NoError(t, err)
	withdrawn, cancel := context.WithCancel(ctx)
	out1 := goAcquire(withdrawn, b, name, lock.WithOwner("leaves"))
	waitWaiters(t, a, name, 1)
	out2 := goAcquire(ctx, b, name, lock.WithOwner("is granted"))
	waitWaiters(t, a, name, 2)
	last, cancelLast := context.WithCancel(ctx)
	out3 := goAcquire(last, b, name, lock.WithOwner("waits on"))
	waitWaiters(t, a, name, 3)
	assert.Len(t, details(), 3, "one entry per queued claim")

	cancel()
	require.ErrorIs(t, (<-out1).err, context.Canceled)
	info, err := a.Inspect(ctx, name)
	require.NoError(t, err)
	require.Len(t, info.Queue, 2)
	assert.Equal(t, "is granted", info.Queue[0].Owner)
	assert.Len(t, details(), 2, "the withdrawn claim's details are gone")

	require.NoError(t, held.Release(ctx))
	r := <-out2
	require.NoError(t, r.err)
	assert.Len(t, details(), 1, "the granted claim's details are gone, the last waiter's stay")
	cancelLast()
	require.ErrorIs(t, (<-out3).err, context.Canceled)
	assert.Equal(t, []string{"lease:" + name, "fence:" + name}, keysOf(t, raw, name), "nobody waits: no queue keys left")

	require.NoError(t, r.lease.Release(ctx))
	assert.Equal(t, []string{"fence:" + name}, keysOf(t, raw, name), "only the fence counter outlives the name's holders and waiters")
}
