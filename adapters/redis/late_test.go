package redis

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
)

// TestLateGrant_KeepsItsPlace (item 16): a waiter's grant answered too
// late to be kept is given back, and the claim goes back to the head of
// the queue, where it was granted, not behind the waiters that came after
// it; errLateGrant is a lock.ErrNoQuorum.
func TestLateGrant_KeepsItsPlace(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	cfg, err := Config{Addr: srv.Addr(), SessionTTL: time.Second}.withDefaults()
	require.NoError(t, err)
	c := newInstance(cfg, newLockerID())
	t.Cleanup(func() { _ = c.Close() })
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	ctx := t.Context()
	const name = "late"
	first, second := c.newClaim(), c.newClaim()

	granted, err := c.tryOnce(ctx, name, first, lock.Options{}, modeWait, asMutex)
	require.NoError(t, err)
	require.True(t, granted.granted)
	queued, err := c.tryOnce(ctx, name, second, lock.Options{}, modeWait, asMutex)
	require.NoError(t, err)
	require.True(t, queued.held, "the second claim queues behind the first")

	// The grant's answer came an hour late and its lease is gone meanwhile.
	require.NoError(t, raw.Del(ctx, cfg.Prefix+"lease:"+name).Err())
	_, err = c.grant(ctx, name, first, lock.Options{}, granted, time.Now().Add(-time.Hour), modeWait)
	require.ErrorIs(t, err, errLateGrant)
	require.ErrorIs(t, err, lock.ErrNoQuorum)

	queue, err := raw.ZRange(ctx, cfg.Prefix+"queue:"+name, 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{first, second}, queue, "the late claim keeps its place at the head")
	again, err := c.tryOnce(ctx, name, first, lock.Options{}, modeWait, asMutex)
	require.NoError(t, err)
	assert.True(t, again.granted, "the head is granted again")
}
