package locktest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// faultEnv names the fault that TestRun_reference plants in the reference
// store; TestRun_detectsFaults sets it in a child process.
const faultEnv = "LOCKTEST_REFERENCE_FAULT"

func TestRun_reference(t *testing.T) {
	f := fault(os.Getenv(faultEnv))
	s := newRefStore(f)
	opts := []Option{FIFO(), ObserveEvery(), s.outage()}
	if f != "" {
		// The suite is expected to fail: fail fast.
		opts = append(opts, func(c *config) { c.wait = 2 * time.Second })
	}
	Run(t, s.newLocker, opts...)
	if f == "" {
		assertStoreEmpty(t, s)
	}
}

// assertStoreEmpty checks that a clean run left nothing in the store: no
// name held or queued, of any type, and no observer. An observer whose ctx
// ended leaves the store from its own goroutine, so that map is polled.
func assertStoreEmpty(t *testing.T, s *refStore) {
	t.Helper()
	s.mu.Lock()
	assert.Empty(t, s.names, "names left held or queued in the store after a clean run")
	assert.Empty(t, s.multi, "elections, semaphores or read-write locks left held or queued in the store after a clean run")
	s.mu.Unlock()
	assert.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.observers) == 0
	}, 10*time.Second, 5*time.Millisecond, "observers left in the store after a clean run")
}

func TestRun_options(t *testing.T) {
	// Without FIFO the FIFO subtest is skipped; NamePrefix is used as is.
	// A clean run leaves nothing behind in the store.
	s := newRefStore("")
	Run(t, s.newLocker, NamePrefix("explicit-prefix/"))
	assertStoreEmpty(t, s)
}

// A fault is one bug planted in the reference store.
type fault string

const (
	faultLIFO              fault = "lifo"                // serves the newest waiter first
	faultReentrant         fault = "reentrant"           // a Locker may take a name it holds again
	faultDoubleGrant       fault = "double-grant"        // a hand-off grants two waiters
	faultLostWakeup        fault = "lost-wakeup"         // Release does not wake waiters
	faultKeepCancelled     fault = "keep-cancelled"      // a cancelled waiter stays queued
	faultCancelRaceLeak    fault = "cancel-race-leak"    // a grant that raced a cancel is kept
	faultStaleRelease      fault = "stale-release"       // Release of an ended lease releases the holder
	faultNoExpiry          fault = "no-expiry"           // TTL leases never expire
	faultEarlyExpiry       fault = "early-expiry"        // TTL leases expire after half their TTL
	faultRefreshNoop       fault = "refresh-noop"        // Refresh does not extend a TTL lease
	faultTokenReset        fault = "token-reset"         // tokens count per name and restart when it is free
	faultCloseKeepsLeases  fault = "close-keeps-leases"  // Close withdraws waiters but keeps leases
	faultLateValidation    fault = "late-validation"     // TryAcquire checks options after the holder
	faultInspectNoOwner    fault = "inspect-no-owner"    // Inspect drops Owner
	faultCaseFold          fault = "case-fold"           // names are case-insensitive
	faultBareNotHeld       fault = "bare-not-held"       // ErrNotHeld does not wrap the lease's end cause
	faultQueuedNoQuorum    fault = "queued-no-quorum"    // a queued Acquire whose ctx ended reports ErrNoQuorum
	faultCtxOnly           fault = "ctx-only"            // an outage call reports its ctx's error without ErrNoQuorum
	faultLapsedCtxOnly     fault = "lapsed-ctx-only"     // ctx-only, once the sessions lapsed during an outage
	faultWaitsStore        fault = "waits-for-store"     // Release and Refresh wait for the store after the lease ended
	faultLyingRefresh      fault = "lying-refresh"       // a Refresh that waited out its lease's end returns nil
	faultOrphanRefresh     fault = "orphan-refresh"      // a Refresh that waited out its lease's end re-takes the name
	faultLateHolder        fault = "late-holder"         // an expired holder's Done closes half a TTL after the hand-off
	faultQueueReversed     fault = "queue-reversed"      // Info.Queue lists the newest waiter first
	faultListAll           fault = "list-all"            // List ignores its prefix
	faultListSkips         fault = "list-skips"          // List's cursor skips the first name of the next page
	faultRevokeGrantsFirst fault = "revoke-grants-first" // Revoke hands the name on before the holder learns
	faultRevokeReusesToken fault = "revoke-reuses-token" // the grant after a revoke reuses the revoked token
	faultAdoptNewToken     fault = "adopt-new-token"     // Adopt gives the lease a new token
	faultAdoptSession      fault = "adopt-session"       // Adopt takes session leases too
	faultAdoptSilent       fault = "adopt-silent"        // the previous holder never learns of an adoption

	faultTwoLeaders         fault = "two-leaders"          // an election seats two terms at once
	faultNoEmptySeat        fault = "no-empty-seat"        // Observe never reports the empty seat
	faultLateResign         fault = "late-resign"          // a term's Done closes after the next term is elected
	faultLimitPlusOne       fault = "limit-plus-one"       // a semaphore grants limit+1 permits
	faultDuplicateSlot      fault = "duplicate-slot"       // a permit's slot is the number of holders, not a free slot
	faultPermitLIFO         fault = "permit-lifo"          // a released permit goes to the newest waiter
	faultLimitIgnored       fault = "limit-ignored"        // a permit call with another limit is accepted
	faultReaderBesideWriter fault = "reader-beside-writer" // a read is granted while a write lease is held
	faultNoWriterPreference fault = "no-writer-preference" // a read is granted at once past a queued writer
	faultWithdrawStuck      fault = "withdraw-stuck"       // a withdrawn waiter does not let those behind it in
	faultWriteCounter       fault = "write-counter"        // write tokens count writes only, below readers' tokens

	faultMultiNoExpiry       fault = "multi-no-expiry"       // permits and read-write leases never expire
	faultTTLPerName          fault = "ttl-per-name"          // one TTL timer per name: a second TTL holder's stops the first's
	faultCloseKeepsMulti     fault = "close-keeps-multi"     // Close keeps the Locker's permits and read-write leases
	faultLateMulti           fault = "late-multi"            // a permit's or read-write lease's Done closes 200 ms after the hand-off
	faultSharedReadToken     fault = "shared-read-token"     // the readers of one hand-off share a token
	faultReadersPastWriter   fault = "readers-past-writer"   // a hand-off grants readers queued behind a writer
	faultObserveReversed     fault = "observe-reversed"      // an observer gets its pending states newest first
	faultCloseKeepsObservers fault = "close-keeps-observers" // Close leaves the Locker's observers open
	faultElectionLIFO        fault = "election-lifo"         // a resign seats the newest candidate
	faultCloseGrantsOwn      fault = "close-grants-own"      // Close hands on after each waiter it withdraws, to its own next waiter too
)

// TestRun_detectsFaults runs the suite against the reference store with one
// planted bug at a time, in a child process, and checks that the subtest
// meant to catch it fails.
func TestRun_detectsFaults(t *testing.T) {
	if os.Getenv(faultEnv) != "" {
		t.Skip("in a child process")
	}
	if testing.Short() {
		t.Skip("starts a process per fault")
	}
	for _, c := range []struct {
		fault   fault
		subtest string
		want    string // a regexp matching the failure message
	}{
		{faultLIFO, "FIFO", "waiters must be served in queue order"},
		{faultReentrant, "TryAcquireHeld", "TryAcquire of a held name from the holder's own Locker"},
		{faultReentrant, "NotReentrant", "leases are not reentrant"},
		{faultDoubleGrant, "MutualExclusion", `holders inside the critical section \(I1\)`},
		{faultDoubleGrant, "Handoff", `is not the holder's token|\(I1\)|Inspect\.Waiters after grant`},
		{faultLostWakeup, "Handoff", `a waiter must be granted when the name is released \(I4\)`},
		{faultKeepCancelled, "AcquireCanceled", "a cancelled Acquire must withdraw its request"},
		{faultKeepCancelled, "AcquireDeadline", "an Acquire past its deadline must withdraw its request"},
		{faultCancelRaceLeak, "AcquireCancelRace", "a grant that raced the cancellation must be released"},
		{faultStaleRelease, "ReleaseTwice", "a stale Release must not end the next holder's lease"},
		{faultNoExpiry, "TTLExpiry", "waiter not granted within"},
		{faultEarlyExpiry, "TTLExpiry", "the waiter was granted before the holder's TTL ran out"},
		{faultLateHolder, "TTLExpiry", `the holder's Done must close before the name is granted elsewhere \(I3\)`},
		{faultRefreshNoop, "RefreshExtendsTTL", "TTL lease"},
		{faultTokenReset, "TokensIncrease", "token must exceed every earlier token of the name"},
		{faultCloseKeepsLeases, "Close", "lease when its Locker's Close returns: Done must be closed"},
		{faultLateValidation, "InvalidInput", `TryAcquire of a held name with WithTTL\(50ms\)`},
		{faultInspectNoOwner, "Inspect", "Inspect of a held session lease"},
		{faultCaseFold, "ValidNames", "distinct names must be distinct locks"},
		{faultBareNotHeld, "EndedLease", `must wrap the cause of the lease's end.*\(R2\)`},
		{faultQueuedNoQuorum, "AcquireDeadline", `the ctx's error alone \(R5\)`},
		{faultQueuedNoQuorum, "AcquireCanceled", `the ctx's error alone \(R5\)`},
		{faultCtxOnly, "OutageNoQuorum", `while the store was unreachable \(R5\)`},
		{faultLapsedCtxOnly, "OutageNoQuorum", `unreachable, after the session lease ended \(R5\)`},
		{faultWaitsStore, "OutageEndedLease", `did not return within .*\(R4`},
		{faultLyingRefresh, "OutageLateRefresh", `returned nil although the lease ended`},
		{faultOrphanRefresh, "OutageLateRefresh", `still held .* by a lease that ended before it`},
		{faultQueueReversed, "InfoStory", "Queue must be in position order"},
		{faultListAll, "List", "which is not a held name under the prefix"},
		{faultListSkips, "List", "every held name under the prefix, once"},
		{faultRevokeGrantsFirst, "Revoke", "the holder's Done must close before the name is granted elsewhere"},
		{faultRevokeReusesToken, "Revoke", `token of the grant after a revoke \(I2\)`},
		{faultAdoptNewToken, "Adopt", "an adopted lease keeps its token"},
		{faultAdoptSession, "Adopt", "Adopt of a session lease"},
		{faultAdoptSilent, "Adopt", "the previous holder's Done after the adoption"},
		{faultTwoLeaders, "Election/OneLeader", `leaders at once \(I1\)|term token \d+ after token \d+`}, // on a loaded machine a late Campaign shows the second term by its token
		{faultNoEmptySeat, "Election/Observe", "the empty seat"},
		{faultLateResign, "Election/Handover", `the old term's Done must be closed before the next term's Campaign returns \(I3\)`},
		{faultLimitPlusOne, "Semaphore/Limit", `4 permits held at once, limit 3 \(I1\)|slot 3 outside \[0, 3\)`},
		{faultLimitPlusOne, "Semaphore/TryAcquire", `TryAcquirePermit with every permit held`},
		{faultDuplicateSlot, "Semaphore/TryAcquire", "the released slot is the only free one"},
		{faultDuplicateSlot, "Semaphore/Limit", "held twice at once"},
		{faultPermitLIFO, "Semaphore/FIFO", "waiters must be served in queue order"},
		{faultLimitIgnored, "Semaphore/InvalidInput", "AcquirePermit with limit 11 of a semaphore of limit 7"},
		{faultReaderBesideWriter, "ReadWrite/ReadersTogether", "TryAcquireRead while a write lease is held"},
		{faultReaderBesideWriter, "ReadWrite/Exclusion", `inside with \d+ of the other mode \(I1\)`},
		{faultNoWriterPreference, "ReadWrite/WriterPreference", "a queued writer holds back later readers"},
		{faultWithdrawStuck, "ReadWrite/WithdrawnWriter", `behind a withdrawn writer must be granted while the first reader holds \(I4\)`},
		{faultWriteCounter, "ReadWrite/WriterToken", `a writer's token must be above every earlier reader's \(I2\)`},
		{faultWriteCounter, "ReadWrite/Exclusion", `not above \d+ granted before it \(I2\)`},
		{faultMultiNoExpiry, "Semaphore/TTLExpiry", "waiter not granted within"},
		{faultMultiNoExpiry, "ReadWrite/TTLExpiry", "waiter not granted within"},
		{faultTTLPerName, "Semaphore/TTLEach", "free after every TTL lease expired"},
		{faultTTLPerName, "ReadWrite/TTLEach", "free after every TTL lease expired"},
		{faultCloseKeepsMulti, "Semaphore/Close", "when its Locker's Close returns: Done must be closed"},
		{faultCloseKeepsMulti, "ReadWrite/Close", "when its Locker's Close returns: Done must be closed"},
		{faultLateMulti, "Semaphore/FIFO", "permit when Release returns: Done must be closed"},
		{faultLateMulti, "Semaphore/TTLExpiry", `the holder's Done must close before the name is granted elsewhere \(I3\)`},
		{faultLateMulti, "ReadWrite/WriterPreference", "lease when Release returns: Done must be closed"},
		{faultLateMulti, "ReadWrite/TTLExpiry", `the holder's Done must close before the name is granted elsewhere \(I3\)`},
		{faultSharedReadToken, "ReadWrite/HandoffReaders", `readers granted in one hand-off must have distinct tokens \(I2\)`},
		{faultReadersPastWriter, "ReadWrite/HandoffReaders", "a hand-off must not grant readers queued behind a writer"},
		{faultObserveReversed, "Election/ObserveOrder", "pending states must be delivered in the store's order"},
		{faultCloseKeepsObservers, "Election/Observe", "waiting for the Observe channel to close after its Locker closed"},
		{faultElectionLIFO, "Election/FIFO", "candidates must be elected in the order they campaigned"},
		{faultCloseGrantsOwn, "ReadWrite/Close", "a queued call of a closing Locker must fail with ErrClosed, never be granted"},
	} {
		t.Run(string(c.fault)+"/"+c.subtest, func(t *testing.T) {
			t.Parallel()
			// Some faults show only in timing, which a busy machine can
			// hide: the suite must catch each in one of a few runs.
			var out []byte
			for range 3 {
				out = runFault(t, c.fault, c.subtest)
				if out != nil {
					break
				}
			}
			require.NotNil(t, out, "the suite passed against the fault %q three times", c.fault)
			assert.Contains(t, string(out), "--- FAIL: TestRun_reference/"+c.subtest+" (", "output:\n%s", out)
			assert.Regexp(t, c.want, string(out), "the subtest failed for another reason; output:\n%s", out)
			assert.NotContains(t, string(out), "panic:", "output:\n%s", out)
		})
	}
}

// runFault runs one subtest of TestRun_reference with f planted in a child
// process and returns its output if it failed, or nil if it passed.
func runFault(t *testing.T, f fault, subtest string) []byte {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0],
		"-test.run=^TestRun_reference$/^"+subtest+"$", "-test.count=1", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), faultEnv+"="+string(f))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err == nil {
		t.Logf("the suite passed against the fault %q:\n%s", f, out)
		return nil
	}
	require.True(t, errors.As(err, &exit), "running the child: %v\n%s", err, out)
	return out
}
