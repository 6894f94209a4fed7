package redis_test

import (
	"context"
	"log/slog"
	"net"
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

// requireLeaseLog checks the Warn record msg of lease, which has ended:
// name, token, the holder and the reason. The record is there when Done
// has closed.
func requireLeaseLog(t *testing.T, logs *records, msg string, lease lock.Lease, holder string) {
	t.Helper()
	for _, attrs := range logs.all(slog.LevelWarn, msg) {
		if attrs["name"] != lease.Name() {
			continue
		}
		assert.Equal(t, lease.Token(), attrs["token"], msg)
		assert.Equal(t, holder, attrs["holder"], msg)
		assert.Equal(t, lease.Err().Error(), attrs["reason"], msg)
		return
	}
	t.Fatalf("no Warn record %q for %q when its Done had closed; records: %v", msg, lease.Name(), logs.messages())
}

// TestLogs_SessionLapse (issue 13, item 6): renewals fail (the server is
// stopped) until the leases' deadlines: every session lease's loss is one
// Warn record with name, token, holder and reason, the lapse of the
// Locker's session is one Warn record, and the failed renewals stay at
// Debug.
func TestLogs_SessionLapse(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	logs := &records{}
	l := newNodeLocker(t, srv.Addr(), "node-a", time.Second, logs)
	ctx := testCtx(t)
	x, err := l.Acquire(ctx, "lapse/x")
	require.NoError(t, err)
	y, err := l.Acquire(ctx, "lapse/y")
	require.NoError(t, err)
	holder := holderOf(t, l, "lapse/x")

	srv.Pause()
	waitDone(t, x, 30*time.Second, "x")
	waitDone(t, y, 30*time.Second, "y")
	require.ErrorIs(t, x.Err(), lock.ErrLost)
	requireLeaseLog(t, logs, "redis lock: lease lost", x, holder)
	requireLeaseLog(t, logs, "redis lock: lease lost", y, holder)
	lapses := logs.all(slog.LevelWarn, "redis lock: session lapsed")
	require.Len(t, lapses, 1, "one lapse, one record; records: %v", logs.messages())
	assert.Equal(t, holder, lapses[0]["holder"])
	for _, msg := range logs.messagesAt(slog.LevelWarn) {
		assert.True(t, strings.HasPrefix(msg, "redis lock: lease lost") || strings.HasPrefix(msg, "redis lock: session lapsed"),
			"routine noise must stay below Warn: %q", msg)
	}
	srv.Resume()
}

// TestLogs_LeaseGone: a renewal that finds the lease gone from the store
// (deleted behind the adapter's back) logs the loss at Warn.
func TestLogs_LeaseGone(t *testing.T) {
	srv := testserver.StartRedis(t, testserver.RedisOptions{})
	logs := &records{}
	l := newNodeLocker(t, srv.Addr(), "node-a", time.Second, logs)
	raw := rawClient(t, srv.Addr())
	ctx := testCtx(t)
	lease, err := l.Acquire(ctx, "gone")
	require.NoError(t, err)
	holder := holderOf(t, l, "gone")
	require.NoError(t, raw.Del(ctx, redis.DefaultPrefix+"lease:gone").Err())
	waitDone(t, lease, 30*time.Second, "the deleted lease")
	require.ErrorIs(t, lease.Err(), lock.ErrLost)
	requireLeaseLog(t, logs, "redis lock: lease lost", lease, holder)
	_, lapsed := logs.find(slog.LevelWarn, "session lapsed")
	assert.False(t, lapsed, "the store answered: no lapse")
}

// TestLogs_RedlockLoss: in Redlock mode the loss of a lease is one Warn
// record (the Redlock lease's), not one per primary; each stopped
// primary's lapse is a Warn record naming it.
func TestLogs_RedlockLoss(t *testing.T) {
	srvs, addrs := startRedlock(t, 3, testserver.RedisOptions{})
	logs := &records{}
	l, err := redis.New(redis.Config{Addrs: addrs, SessionTTL: time.Second, Logger: slog.New(logs)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	ctx := testCtx(t)
	lease, err := l.Acquire(ctx, "redlock-loss")
	require.NoError(t, err)
	holder := holderOf(t, l, "redlock-loss")

	srvs[0].Pause()
	srvs[1].Pause()
	waitDone(t, lease, 30*time.Second, "the Redlock lease")
	require.ErrorIs(t, lease.Err(), lock.ErrLost)
	requireLeaseLog(t, logs, "redis lock: lease lost", lease, holder)
	assert.Len(t, logs.all(slog.LevelWarn, "redis lock: lease lost"), 1, "one loss, one Warn record; records: %v", logs.messages())
	lapsed := map[any]bool{}
	for _, attrs := range logs.all(slog.LevelWarn, "redis lock: session lapsed") {
		lapsed[attrs["primary"]] = true
	}
	assert.Equal(t, map[any]bool{addrs[0]: true, addrs[1]: true}, lapsed, "the stopped primaries' lapses")
	srvs[0].Resume()
	srvs[1].Resume()
}

// TestRouteClientLogs: go-redis's own lines reach the application's slog
// logger only through the opt-in, at Debug; RouteClientLogs(nil) drops them.
func TestRouteClientLogs(t *testing.T) {
	t.Cleanup(func() { goredis.SetLogger(quietLogger{}) }) // TestMain's
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nobody listens there now

	logs := &records{}
	redis.RouteClientLogs(slog.New(logs))
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	require.Error(t, c.Ping(context.Background()).Err())
	attrs, ok := logs.find(slog.LevelDebug, "failed to dial")
	require.True(t, ok, "go-redis's dial failure routed at Debug; records: %v", logs.messages())
	assert.Empty(t, attrs, "a go-redis line is a message")

	redis.RouteClientLogs(nil)
	n := len(logs.messages())
	require.Error(t, c.Ping(context.Background()).Err())
	assert.Len(t, logs.messages(), n, "RouteClientLogs(nil) drops go-redis's lines")
}
