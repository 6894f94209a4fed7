package migrate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// store opens Lockers (each with its own session) on one running store.
type store struct {
	name string
	open func(t *testing.T) lock.Locker
}

func redisStore(t *testing.T) store {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	return store{name: "redis", open: func(t *testing.T) lock.Locker {
		l, err := redis.New(redis.Config{Addr: srv.Addr(), SessionTTL: 2 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}}
}

// zkStore is a one-member ZooKeeper ensemble: a quorum, as in production,
// so its zxids carry an epoch (2^32 and up); a standalone server's start
// at 0 (DESIGN.md, "What each pair of stores guarantees").
func zkStore(t *testing.T) store {
	srv := testserver.StartEnsemble(t, 1, testserver.ZKOptions{})
	return store{name: "zookeeper", open: func(t *testing.T) lock.Locker {
		l, err := zookeeper.New(zookeeper.Config{Servers: srv.Servers(), SessionTimeout: 4 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}}
}

// embeddedStore is a cluster of size nodes; the n-th Locker opened is on
// node n mod size.
func embeddedStore(t *testing.T, size int) store {
	c := testcluster.Start(t, testcluster.Options{Size: size})
	opened := 0
	return store{name: "embedded", open: func(t *testing.T) lock.Locker {
		i := opened % size
		opened++
		l, err := c.NewLocker(ctxFor(t, 30*time.Second), i)
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}}
}

// newMigrate opens a Locker on each store and wraps them in phase.
func newMigrate(t *testing.T, from, to store, cfg migrate.Config) *migrate.Locker {
	t.Helper()
	l, err := migrate.New(from.open(t), to.open(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// free reports whether l's store holds name for nobody.
func free(t testing.TB, l lock.Locker, name string) bool {
	info, err := l.Inspect(ctxFor(t, 10*time.Second), name)
	require.NoError(t, err)
	return !info.Held
}
