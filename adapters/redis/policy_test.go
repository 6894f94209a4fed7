package redis_test

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestEvictionPolicy_Refused (item 17): a server whose maxmemory-policy may
// evict a live lease is refused with ErrEvictionPolicy (not ErrNoQuorum)
// by every call until it runs noeviction; SkipEvictionCheck accepts it.
func TestEvictionPolicy_Refused(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	require.NoError(t, raw.ConfigSet(testCtx(t), "maxmemory-policy", "volatile-lru").Err())

	l := newLocker(t, srv.Addr(), time.Second)
	_, err := l.Acquire(testCtx(t), "evict")
	require.ErrorIs(t, err, redis.ErrEvictionPolicy)
	assert.NotErrorIs(t, err, lock.ErrNoQuorum)
	assert.Contains(t, err.Error(), "volatile-lru")
	_, err = l.TryAcquire(testCtx(t), "evict")
	require.ErrorIs(t, err, redis.ErrEvictionPolicy)
	_, err = l.Inspect(testCtx(t), "evict")
	require.ErrorIs(t, err, redis.ErrEvictionPolicy)

	skip, err := redis.New(redis.Config{Addr: srv.Addr(), SkipEvictionCheck: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = skip.Close() })
	lease, err := skip.Acquire(testCtx(t), "evict")
	require.NoError(t, err, "SkipEvictionCheck accepts the risk")
	require.NoError(t, lease.Release(testCtx(t)))

	require.NoError(t, raw.ConfigSet(testCtx(t), "maxmemory-policy", "noeviction").Err())
	lease, err = l.Acquire(testCtx(t), "evict")
	require.NoError(t, err, "a refusal is not remembered: the fixed server is used")
	require.NoError(t, lease.Release(testCtx(t)))
}

// TestEvictionPolicy_Unreadable (item 17): a server that lets the client
// read neither INFO nor CONFIG (a managed service, an ACL) is refused too
// (fail closed) unless SkipEvictionCheck is set.
func TestEvictionPolicy_Unreadable(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	require.NoError(t, raw.Do(testCtx(t), "ACL", "SETUSER", "app", "on", ">secret", "~*", "&*", "+@all", "-info", "-config").Err())
	client := func() *goredis.Client {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), Username: "app", Password: "secret", ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	l, err := redis.New(redis.Config{Client: client(), SessionTTL: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	_, err = l.TryAcquire(testCtx(t), "unreadable")
	require.ErrorIs(t, err, redis.ErrEvictionPolicy)
	assert.Contains(t, err.Error(), "NOPERM")

	skip, err := redis.New(redis.Config{Client: client(), SessionTTL: time.Second, SkipEvictionCheck: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = skip.Close() })
	lease, err := skip.TryAcquire(testCtx(t), "unreadable")
	require.NoError(t, err)
	require.NoError(t, lease.Release(testCtx(t)))
}
