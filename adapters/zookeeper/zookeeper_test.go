package zookeeper_test

import (
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

// faultTimeout is the session timeout of the Lockers the fault tests
// fault: short, so that the tests are quick (five ticks of the test
// servers' 200 ms tick). The other Lockers of a fault test, which must not
// lose their sessions, use stableTimeout, so that a loaded machine does
// not expire them by accident.
const (
	faultTimeout  = time.Second
	stableTimeout = 10 * time.Second
)

func zkOptions() testserver.ZKOptions {
	return testserver.ZKOptions{ExtendedTypes: true, ContainerCheckInterval: reaperInterval}
}

func lockers(servers []string, timeout time.Duration) func(t *testing.T) lock.Locker {
	return func(t *testing.T) lock.Locker { return newLocker(t, servers, timeout) }
}

// TestStandalone runs the conformance suite and the single-server tests
// against one standalone server; the fault tests at the end pause, kill
// and restart it.
func TestStandalone(t *testing.T) {
	z := testserver.StartZooKeeper(t, zkOptions())
	servers := []string{z.Addr()}
	t.Run("Conformance", func(t *testing.T) {
		// Outages pause the server (SIGSTOP): it keeps its connections
		// but answers nothing until resumed.
		locktest.Run(t, lockers(servers, conformanceTimeout), locktest.FIFO(),
			locktest.Outage(func(t *testing.T) locktest.OutageStore {
				return locktest.OutageStore{Cut: z.Pause, Heal: func() { z.Resume(); waitWritable(t, servers) }}
			}))
	})
	t.Run("CancelledWaitLeavesNoNode", func(t *testing.T) { testCancelledWaitLeavesNoNode(t, servers) })
	t.Run("ProtectedCreateRecovery", func(t *testing.T) { testProtectedCreateRecovery(t, servers) })
	t.Run("ExistingConn", func(t *testing.T) { testExistingConn(t, servers) })
	t.Run("LostCreateReply", func(t *testing.T) { testLostCreateReply(t, z) })
	t.Run("FailedCreateWrite", func(t *testing.T) { testFailedCreateWrite(t, z) })
	t.Run("EscapedNamesInTree", func(t *testing.T) { testEscapedNamesInTree(t, servers) })
	t.Run("NegotiatedTimeout", func(t *testing.T) { testNegotiatedTimeout(t, servers) })
	t.Run("RefreshAfterLocalEnd", func(t *testing.T) { testRefreshAfterLocalEnd(t, servers) })
	t.Run("RequeueFreshGUID", func(t *testing.T) { testRequeueFreshGUID(t, servers) })
	t.Run("ReleaseOfVanishedNode", func(t *testing.T) { testReleaseOfVanishedNode(t, servers) })
	t.Run("CancelledWaitsShareWatch", func(t *testing.T) { testCancelledWaitsShareWatch(t, servers) })
	t.Run("EndedCtxOnReachableStore", func(t *testing.T) { testEndedCtxOnReachableStore(t, servers) })
	t.Run("AbandonedCallWritesNothing", func(t *testing.T) { testAbandonedCallWritesNothing(t, z) })
	t.Run("MetricsWorkload", func(t *testing.T) { testMetricsWorkload(t, servers) })
	t.Run("ShutdownReleases", func(t *testing.T) { testShutdownReleases(t, servers) })
	t.Run("ShutdownHandOver", func(t *testing.T) { testShutdownHandOver(t, servers) })
	t.Run("ShutdownEndedCtxSharedConn", func(t *testing.T) { testShutdownEndedCtxSharedConn(t, servers) })
	// Operating a lock (issue 13).
	t.Run("InspectStory", func(t *testing.T) { testInspectStory(t, servers) })
	t.Run("OldFormatData", func(t *testing.T) { testOldFormatData(t, servers) })
	t.Run("List", func(t *testing.T) { testList(t, servers) })
	t.Run("RevokeWhileWaiting", func(t *testing.T) { testRevokeWhileWaiting(t, servers) })
	t.Run("RevokeSeenByRefresh", func(t *testing.T) { testRevokeSeenByRefresh(t, servers) })
	t.Run("RevokeUnresponsiveTTL", func(t *testing.T) { testRevokeUnresponsiveTTL(t, servers) })
	t.Run("RevokeSessionNotForced", func(t *testing.T) { testRevokeSessionNotForced(t, servers) })
	t.Run("AdoptAfterHolderVanished", func(t *testing.T) { testAdoptAfterHolderVanished(t, servers) })
	t.Run("AdoptLiveHolder", func(t *testing.T) { testAdoptLiveHolder(t, servers) })
	t.Run("AdoptRefused", func(t *testing.T) { testAdoptRefused(t, servers) })
	// Raising tokens (issue 15).
	t.Run("FloorToken", func(t *testing.T) { testFloorToken(t, servers) })
	t.Run("FloorTokenQueuedWaiter", func(t *testing.T) { testFloorTokenQueuedWaiter(t, servers) })
	t.Run("FloorTokenClaimDuringCatchUp", func(t *testing.T) { testFloorTokenClaimDuringCatchUp(t, servers) })
	t.Run("FloorTokenInvalid", testFloorTokenInvalid)
	// Elections (issue 17).
	t.Run("ElectionTerms", func(t *testing.T) { testElectionTerms(t, servers) })
	t.Run("ElectionObserve", func(t *testing.T) { testElectionObserve(t, servers) })
	t.Run("ElectionHolderClosed", func(t *testing.T) { testElectionHolderClosed(t, servers) })
	t.Run("ObserveEnds", func(t *testing.T) { testObserveEnds(t, servers) })
	t.Run("ObserveWaits", func(t *testing.T) { testObserveWaits(t, servers) })
	t.Run("ProclaimRacesRefresh", func(t *testing.T) { testProclaimRacesRefresh(t, servers) })
	t.Run("AdoptTerm", func(t *testing.T) { testAdoptTerm(t, servers) })
	t.Run("ObserveSlowReader", func(t *testing.T) { testObserveSlowReader(t, servers) })
	t.Run("ElectionTypeMismatch", func(t *testing.T) { testElectionTypeMismatch(t, servers) })
	t.Run("ElectionBadInputs", func(t *testing.T) { testElectionBadInputs(t, servers) })
	t.Run("ElectionChildNames", func(t *testing.T) { testElectionChildNames(t, servers) })
	t.Run("ChildTypeInterop", func(t *testing.T) { testChildTypeInterop(t, servers) })
	t.Run("MutexCheckReadsNothing", func(t *testing.T) { testMutexCheckReadsNothing(t, servers) })
	t.Run("ObserveSince", func(t *testing.T) { testObserveSince(t, servers) })
	// Semaphores and read-write locks (issue 17).
	t.Run("SemaphoreWakesOnAnyRelease", func(t *testing.T) { testSemaphoreWakesOnAnyRelease(t, servers) })
	t.Run("SemaphoreSlotOrder", func(t *testing.T) { testSemaphoreSlotOrder(t, servers) })
	t.Run("SemaphoreMissedRelease", func(t *testing.T) { testSemaphoreMissedRelease(t, servers) })
	t.Run("PermitRecord", func(t *testing.T) { testPermitRecord(t, servers) })
	t.Run("PermitWithdrawn", func(t *testing.T) { testPermitWithdrawn(t, servers) })
	t.Run("RevokeAdoptAnyHolder", func(t *testing.T) { testRevokeAdoptAnyHolder(t, servers) })
	t.Run("SemaphoreHandOffReads", func(t *testing.T) { testSemaphoreHandOffReads(t, servers) })
	t.Run("InspectTypes", func(t *testing.T) { testInspectTypes(t, servers) })
	// Faults: each leaves the server serving again.
	t.Run("PauseWhileHolding", func(t *testing.T) { testPauseWhileHolding(t, z) })
	t.Run("ExpiryWhileHolding", func(t *testing.T) { testExpiryWhileHolding(t, z) })
	t.Run("ExpiryWhileWaiting", func(t *testing.T) { testExpiryWhileWaiting(t, z) })
	t.Run("ElectionSessionExpiry", func(t *testing.T) { testElectionSessionExpiry(t, z) })
	t.Run("ObserveAcrossExpiry", func(t *testing.T) { testObserveAcrossExpiry(t, z) })
	t.Run("RestartWhileHolding", func(t *testing.T) { testRestartWhileHolding(t, z) })
	t.Run("ReleaseWhileUnreachable", func(t *testing.T) { testReleaseWhileUnreachable(t, z) })
	t.Run("NoQuorum", func(t *testing.T) { testNoQuorum(t, z) })
	t.Run("QueuedWaiterEndsInOutage", func(t *testing.T) { testQueuedWaiterEndsInOutage(t, z) })
	t.Run("FloorTokenNoQuorum", func(t *testing.T) { testFloorTokenNoQuorum(t, z) })
	t.Run("ShutdownEndedCtx", func(t *testing.T) { testShutdownEndedCtx(t, z) })
}

// TestEnsemble runs the conformance suite against a 3-server ensemble, then
// kills a member under a held lease.
func TestEnsemble(t *testing.T) {
	e := testserver.StartEnsemble(t, 3, zkOptions())
	t.Run("Conformance", func(t *testing.T) {
		// Outages pause two of the three members: the third loses its
		// quorum and stops serving. Until it notices, syncLimit × tickTime
		// later, it still answers syncs and reads, so a session lease's
		// Refresh made at the cut can be confirmed: the suite accepts an
		// answer to a read made at the cut (lock/DESIGN.md, R5). Pausing
		// all three instead left the resumed ensemble committing no write
		// for over a minute in 2 of 5 loop runs (docs/journal.md, session
		// 5). The heal waits for a quorum and a committed write.
		locktest.Run(t, lockers(e.Servers(), conformanceTimeout), locktest.FIFO(),
			locktest.Outage(func(t *testing.T) locktest.OutageStore {
				return locktest.OutageStore{
					Cut: func() {
						e.Member(0).Pause()
						e.Member(1).Pause()
					},
					Heal: func() {
						e.Member(0).Resume()
						e.Member(1).Resume()
						e.WaitQuorum(t)
						waitWritable(t, e.Servers())
					},
				}
			}))
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
