package redis_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestDeadWaiterPruned (I4): a waiter that died at the head of the queue
// (its heartbeat deadline passes) is pruned by whoever looks, and the next
// waiter is granted; it does not block the queue forever.
func TestDeadWaiterPruned(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	a := newLocker(t, srv.Addr(), time.Second)
	b := newLocker(t, srv.Addr(), time.Second)
	name := "dead-waiter"
	holder, err := a.Acquire(testCtx(t), name)
	require.NoError(t, err)

	// A claim of a Locker that no longer exists, first in line, with a
	// heartbeat deadline 300 ms from now (server time).
	now, err := raw.Time(testCtx(t)).Result()
	require.NoError(t, err)
	const dead = "deadlocker/1"
	require.NoError(t, raw.ZAdd(testCtx(t), redis.DefaultPrefix+"queue:"+name, goredis.Z{Score: 0, Member: dead}).Err())
	require.NoError(t, raw.ZAdd(testCtx(t), redis.DefaultPrefix+"beats:"+name,
		goredis.Z{Score: float64(now.Add(300 * time.Millisecond).UnixMilli()), Member: dead}).Err())
	require.NoError(t, raw.HSet(testCtx(t), redis.DefaultPrefix+"claims:"+name, dead, "0\nghost-node\nghost").Err())

	out := make(chan lock.Lease, 1)
	errs := make(chan error, 1)
	go func() {
		l, err := b.Acquire(testCtx(t), name)
		errs <- err
		out <- l
	}()
	waitWaiters(t, a, name, 2)
	// Inspect prunes the dead claim once its deadline has passed; its
	// details go with it while the live waiter stays.
	waitWaiters(t, a, name, 1)
	left, err := raw.HExists(testCtx(t), redis.DefaultPrefix+"claims:"+name, dead).Result()
	require.NoError(t, err)
	assert.False(t, left, "a pruned claim's details are removed with it")
	released := time.Now()
	require.NoError(t, holder.Release(testCtx(t)))
	require.NoError(t, <-errs)
	next := <-out
	t.Logf("granted %v after the release, past the dead head's heartbeat deadline", time.Since(released))
	assert.Greater(t, next.Token(), holder.Token())
	info, err := a.Inspect(testCtx(t), name)
	require.NoError(t, err)
	assert.Equal(t, lock.Info{Name: name, Held: true, Token: next.Token()}, stateOf(info), "the dead claim must be gone")
	require.NoError(t, next.Release(testCtx(t)))
	assert.Equal(t, []string{"fence:" + name}, keysOf(t, raw, name), "no queue keys, and no claim details, once nobody waits")
}

// scriptCounter counts script calls made through a client.
type scriptCounter struct{ n atomic.Int64 }

func (h *scriptCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *scriptCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *scriptCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// TestWaitNoPolling (I4): a waiter behind a long-held session lease makes
// a logarithmic number of early attempts and then one per backoff cap (1 s),
// not a busy loop, and is woken by the release.
func TestWaitNoPolling(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	counter := &scriptCounter{}
	client.AddHook(counter)
	a := newLocker(t, srv.Addr(), 10*time.Second)
	b, err := redis.New(redis.Config{Client: client, SessionTTL: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	name := "no-polling"
	holder, err := a.Acquire(testCtx(t), name)
	require.NoError(t, err)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		l, err := b.Acquire(testCtx(t), name)
		if err == nil {
			err = l.Release(testCtx(t))
		}
		done <- err
	}()
	waitWaiters(t, a, name, 1)
	<-time.After(1500 * time.Millisecond) // let the waiter wait
	attempts := counter.n.Load()
	waited := time.Since(start)

	// The release wakes the waiter by a message addressed to its claim.
	sub := client.PSubscribe(testCtx(t), redis.DefaultPrefix+"wake:*")
	t.Cleanup(func() { _ = sub.Close() })
	_, err = sub.Receive(testCtx(t)) // the subscription confirmation
	require.NoError(t, err)
	released := time.Now()
	require.NoError(t, holder.Release(testCtx(t)))
	msg, err := sub.ReceiveMessage(testCtx(t))
	require.NoError(t, err)
	assert.Regexp(t, `^[a-z0-9]+/[0-9]+$`, msg.Payload, "wake-up payload: the head's claim ID")
	lockerID, _, _ := strings.Cut(msg.Payload, "/")
	assert.Equal(t, redis.DefaultPrefix+"wake:"+lockerID, msg.Channel, "sent on the head Locker's channel")
	require.NoError(t, <-done)
	t.Logf("waiter made %d attempts in %v; granted and released %v after the release", attempts, waited, time.Since(released))
	// 20 ms doubling to 1 s with ±25 % jitter: at most 7 attempts to reach
	// the cap, then one per 750 ms at least.
	limit := 8 + int64(waited/(750*time.Millisecond))
	assert.LessOrEqual(t, attempts, limit, "a waiter must not poll in a busy loop")
}
