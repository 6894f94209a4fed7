package redis_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// TestConformance runs the conformance suite against a real redis-server,
// once without persistence and once with appendfsync always; one server per
// mode serves every subtest.
func TestConformance(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts testserver.RedisOptions
	}{
		{"NoPersistence", testserver.RedisOptions{}},
		{"AppendFsyncAlways", testserver.RedisOptions{AppendFsyncAlways: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv := testserver.StartRedis(t, mode.opts)
			locktest.Run(t, func(t *testing.T) lock.Locker {
				l, err := redis.New(redis.Config{Addr: srv.Addr()})
				require.NoError(t, err)
				t.Cleanup(func() { _ = l.Close() })
				return l
			}, locktest.FIFO(), locktest.ListUnordered(), locktest.ObserveEvery(), locktest.Outage(func(*testing.T) locktest.OutageStore {
				// The shared server, paused (SIGSTOP): it keeps its
				// connections and data but answers nothing until resumed.
				return locktest.OutageStore{Cut: srv.Pause, Heal: srv.Resume}
			}))
		})
	}
}
