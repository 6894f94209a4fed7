package redis_test

import (
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

func TestNew_InvalidConfig(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = client.Close() })
	cluster := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { _ = cluster.Close() })
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	t.Cleanup(func() { _ = ring.Close() })

	for _, c := range []struct {
		what  string
		cfg   redis.Config
		field string
	}{
		{"neither Addr nor Client nor Addrs", redis.Config{}, "Addr, Client or Addrs"},
		{"both Addr and Client", redis.Config{Addr: "127.0.0.1:6379", Client: client}, "Addr, Client and Addrs"},
		{"both Addr and Addrs", redis.Config{Addr: "127.0.0.1:6379", Addrs: []string{"a:1", "b:1", "c:1"}}, "Addr, Client and Addrs"},
		{"Addrs too short", redis.Config{Addrs: []string{"a:1", "b:1"}}, "Addrs"},
		{"Addrs with a bad entry", redis.Config{Addrs: []string{"a:1", "b", "c:1"}}, "Addrs[1]"},
		{"Addrs with a duplicate", redis.Config{Addrs: []string{"a:1", "b:1", "a:1"}}, "Addrs[2]"},
		{"Addr without a port", redis.Config{Addr: "localhost"}, "Addr"},
		{"Addr with spaces", redis.Config{Addr: " 127.0.0.1:6379"}, "Addr"},
		{"a cluster client", redis.Config{Client: cluster}, "Client"},
		{"a ring", redis.Config{Client: ring}, "Client"},
		{"Prefix too long", redis.Config{Addr: "127.0.0.1:6379", Prefix: string(make([]byte, redis.MaxPrefixLen+1))}, "Prefix"},
		{"Prefix not UTF-8", redis.Config{Addr: "127.0.0.1:6379", Prefix: "\xff"}, "Prefix"},
		{"SessionTTL too short", redis.Config{Addr: "127.0.0.1:6379", SessionTTL: 99 * time.Millisecond}, "SessionTTL"},
		{"SessionTTL negative", redis.Config{Addr: "127.0.0.1:6379", SessionTTL: -time.Second}, "SessionTTL"},
		{"SessionTTL too long", redis.Config{Addr: "127.0.0.1:6379", SessionTTL: 25 * time.Hour}, "SessionTTL"},
		{"Node too long", redis.Config{Addr: "127.0.0.1:6379", Node: strings.Repeat("n", redis.MaxNodeLen+1)}, "Node"},
		{"Node not UTF-8", redis.Config{Addr: "127.0.0.1:6379", Node: "\xff"}, "Node"},
		{"Node with a newline", redis.Config{Addr: "127.0.0.1:6379", Node: "a\nb"}, "Node"},
	} {
		l, err := redis.New(c.cfg)
		assert.ErrorIs(t, err, redis.ErrInvalidConfig, c.what)
		assert.Nil(t, l, c.what)
		if err != nil {
			assert.Contains(t, err.Error(), c.field, "%s: the error must name the field", c.what)
		}
	}

	// The limits themselves are accepted; New does not wait for a server.
	for _, cfg := range []redis.Config{
		{Addr: "127.0.0.1:1"},
		{Client: client, SessionTTL: redis.MinSessionTTL},
		{Addr: "127.0.0.1:1", SessionTTL: redis.MaxSessionTTL, Prefix: "x"},
		{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}},
		{Addr: "127.0.0.1:1", Node: strings.Repeat("n", redis.MaxNodeLen)},
	} {
		l, err := redis.New(cfg)
		require.NoError(t, err)
		require.NoError(t, l.Close())
		require.NoError(t, l.Close(), "Close is idempotent")
	}
}

// TestConfig_Client: a caller's client is used and not closed by Close;
// Lockers with different prefixes do not see each other's locks.
func TestConfig_Client(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })

	a, err := redis.New(redis.Config{Client: client, Prefix: "app-a:"})
	require.NoError(t, err)
	b, err := redis.New(redis.Config{Client: client, Prefix: "app-b:"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	la, err := a.TryAcquire(testCtx(t), "shared")
	require.NoError(t, err)
	lb, err := b.TryAcquire(testCtx(t), "shared")
	require.NoError(t, err, "another prefix is another lock space")
	keys, err := client.Keys(testCtx(t), "app-a:lease:*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"app-a:lease:shared"}, keys)

	require.NoError(t, a.Close())
	assert.ErrorIs(t, la.Err(), lock.ErrReleased)
	require.NoError(t, client.Ping(testCtx(t)).Err(), "Close must not close the caller's client")
	require.NoError(t, lb.Release(testCtx(t)))
}
