package zookeeper_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/internal/testserver"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// reaperInterval is the test servers' container/TTL reaper period: TTL
// leases of dead holders are deleted within TTL + reaperInterval.
const reaperInterval = 100 * time.Millisecond

// conformanceTimeout is the session timeout of the conformance runs, long
// enough that a loaded machine does not lose sessions by accident.
const conformanceTimeout = 10 * time.Second

func zkOptions() testserver.ZKOptions {
	return testserver.ZKOptions{ExtendedTypes: true, ContainerCheckInterval: reaperInterval}
}

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
	if os.Getenv("ZKDEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := zookeeper.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func lockers(servers []string, timeout time.Duration) func(t *testing.T) lock.Locker {
	return func(t *testing.T) lock.Locker { return newLocker(t, servers, timeout) }
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

// TestStandalone runs the conformance suite and the single-server tests
// against one standalone server; the fault tests at the end pause, kill
// and restart it.
func TestStandalone(t *testing.T) {
	z := testserver.StartZooKeeper(t, zkOptions())
	servers := []string{z.Addr()}
	t.Run("Conformance", func(t *testing.T) {
		locktest.Run(t, lockers(servers, conformanceTimeout), locktest.FIFO())
	})
	t.Run("CancelledWaitLeavesNoNode", func(t *testing.T) { testCancelledWaitLeavesNoNode(t, servers) })
	t.Run("ProtectedCreateRecovery", func(t *testing.T) { testProtectedCreateRecovery(t, servers) })
	t.Run("ExistingConn", func(t *testing.T) { testExistingConn(t, servers) })
	t.Run("LostCreateReply", func(t *testing.T) { testLostCreateReply(t, z) })
	t.Run("FailedCreateWrite", func(t *testing.T) { testFailedCreateWrite(t, z) })
	t.Run("EscapedNamesInTree", func(t *testing.T) { testEscapedNamesInTree(t, servers) })
	t.Run("NegotiatedTimeout", func(t *testing.T) { testNegotiatedTimeout(t, servers) })
	// Faults: each leaves the server serving again.
	t.Run("PauseWhileHolding", func(t *testing.T) { testPauseWhileHolding(t, z) })
	t.Run("ExpiryWhileHolding", func(t *testing.T) { testExpiryWhileHolding(t, z) })
	t.Run("ExpiryWhileWaiting", func(t *testing.T) { testExpiryWhileWaiting(t, z) })
	t.Run("RestartWhileHolding", func(t *testing.T) { testRestartWhileHolding(t, z) })
}

// testNegotiatedTimeout: a server that lowers the requested session timeout
// (the test server's maxSessionTimeout is 60 s) must lower the deadlines
// too, or a holder would trust its lease after the server expired it. The
// adapter learns the negotiated value from go-zookeeper's handshake log
// line; this test fails if that line ever changes.
func testNegotiatedTimeout(t *testing.T, servers []string) {
	l := newLocker(t, servers, 2*time.Minute)
	ctx := ctxFor(t, 20*time.Second)
	lease, err := l.Acquire(ctx, "negotiated")
	require.NoError(t, err)
	assert.Equal(t, time.Minute, zookeeper.SessionTimeout(l))
	require.NoError(t, lease.Release(ctx))
}

// TestEnsemble runs the conformance suite against a 3-server ensemble, then
// kills a member under a held lease.
func TestEnsemble(t *testing.T) {
	e := testserver.StartEnsemble(t, 3, zkOptions())
	t.Run("Conformance", func(t *testing.T) {
		locktest.Run(t, lockers(e.Servers(), conformanceTimeout), locktest.FIFO())
	})
	t.Run("KillMemberMidHold", func(t *testing.T) { testKillMemberMidHold(t, e) })
	t.Run("KillLeaderMidHold", func(t *testing.T) { testKillLeaderMidHold(t, e) })
}

// TestTTLUnsupported: without extended types the server refuses TTL nodes
// and WithTTL fails with ErrTTLUnsupported; session leases still work.
func TestTTLUnsupported(t *testing.T) {
	z := testserver.StartZooKeeper(t, testserver.ZKOptions{})
	l := newLocker(t, []string{z.Addr()}, 4*time.Second)
	ctx := ctxFor(t, 10*time.Second)
	lease, err := l.Acquire(ctx, "ttl", lock.WithTTL(time.Minute))
	assert.ErrorIs(t, err, zookeeper.ErrTTLUnsupported)
	assert.Nil(t, lease)
	lease, err = l.Acquire(ctx, "ttl")
	require.NoError(t, err)
	require.NoError(t, lease.Release(ctx))
}
