package zookeeper_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// newLocker returns a Locker on servers, closed at the end of t.
func newLocker(t testing.TB, servers []string, timeout time.Duration) *zookeeper.Locker {
	t.Helper()
	return startLocker(t, zookeeper.Config{Servers: servers, SessionTimeout: timeout})
}

// startLocker returns a Locker with cfg under the tests' root, logging to
// stderr when ZKDEBUG is set, closed at the end of t.
func startLocker(t testing.TB, cfg zookeeper.Config) *zookeeper.Locker {
	t.Helper()
	cfg.Root = "/quorumlock-test"
	if cfg.Logger == nil && os.Getenv("ZKDEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := zookeeper.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// ctxFor returns a context bounded by d and by the end of t.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		<-tick.C
	}
}

// children lists a lock name's claim nodes as l's session sees them after a
// sync.
func children(t testing.TB, l *zookeeper.Locker, name string) []string {
	t.Helper()
	dir := zookeeper.Dir(l, name)
	_, err := zookeeper.Conn(l).Sync(dir)
	if !errors.Is(err, zk.ErrNoNode) {
		require.NoError(t, err)
	}
	kids, _, err := zookeeper.Conn(l).Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	require.NoError(t, err)
	return kids
}

func newGUID(t testing.TB) string {
	var g [16]byte
	_, err := rand.Read(g[:])
	require.NoError(t, err)
	return hex.EncodeToString(g[:])
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// waitDone waits for a lease's Done and returns when it closed.
func waitDone(t *testing.T, lease lock.Lease, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-lease.Done():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: Done not closed within %v", what, within)
	}
	panic("unreachable")
}

// waitPast polls until d has passed since start: the server-side event
// under test (a session expiring) is a matter of real time.
func waitPast(t *testing.T, start time.Time, d time.Duration) {
	t.Helper()
	eventually(t, d+time.Minute, "time passes", func() bool { return time.Since(start) > d })
}

// grant is the outcome of an Acquire made in a goroutine.
type grant struct {
	lease lock.Lease
	err   error
	at    time.Time
}

func goAcquire(ctx context.Context, l lock.Locker, name string, opts ...lock.Option) <-chan grant {
	out := make(chan grant, 1)
	go func() {
		lease, err := l.Acquire(ctx, name, opts...)
		out <- grant{lease, err, time.Now()}
	}()
	return out
}

// waitWritable waits until the store at servers commits a write (a
// sequential node created and deleted): after a pause, srvr may report a
// leader at once while the members are still finding out that they lost
// each other and electing again, so "serving" is proved by a write.
func waitWritable(t testing.TB, servers []string) {
	t.Helper()
	conn, _, err := zk.Connect(servers, 4*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	require.NoError(t, err)
	defer conn.Close()
	eventually(t, 60*time.Second, "the store commits a write after the heal", func() bool {
		p, err := conn.Create("/quorumlock-heal-probe-", nil, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
		if err != nil {
			return false
		}
		return conn.Delete(p, -1) == nil
	})
}

// assertHeldBy checks the parts of info that say who holds its name: lease,
// with owner, by holder's Locker, as a session or TTL lease.
func assertHeldBy(t *testing.T, info lock.Info, lease lock.Lease, owner string, holder *zookeeper.Locker) {
	t.Helper()
	assert.Equal(t, lease.Name(), info.Name, "Info.Name")
	assert.True(t, info.Held, "Info.Held")
	assert.Equal(t, lease.Token(), info.Token, "Info.Token")
	assert.Equal(t, owner, info.Owner, "Info.Owner")
	assert.Equal(t, zookeeper.HolderID(holder), info.Holder, "Info.Holder")
	assert.Contains(t, []lock.Kind{lock.KindSession, lock.KindTTL}, info.Kind, "Info.Kind")
}
