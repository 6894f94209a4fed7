// Package locktest is the conformance suite for implementations of
// lock.Locker, in the spirit of testing/fstest.TestFS: every backend
// (the embedded Raft node, the ZooKeeper and Redis adapters) runs the same
// checks of the contract in package lock and of the safety invariants defined in
// lock/DESIGN.md.
//
// A backend calls Run from one of its tests with a function that opens a new
// client on one shared store:
//
//	func TestLocker(t *testing.T) {
//		srv := startServer(t) // one store for the whole run
//		locktest.Run(t, func(t *testing.T) lock.Locker {
//			l, err := backend.New(backend.Config{Addrs: srv.Addrs()})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { l.Close() })
//			return l
//		}, locktest.FIFO())
//	}
//
// Each call of the function must return a new client with its own session,
// so that two of them behave like two processes. Run calls it at least twice
// per subtest and uses both Lockers wherever a property involves more than
// one party (a holder and a waiter, a lease and an intruder). The function
// registers its own cleanup; Run also closes every Locker it obtained when
// the subtest ends, so Close must be idempotent, as lock.Locker requires.
//
// Every subtest uses lock names of its own, under a prefix that is random per
// Run unless NamePrefix sets it, so one store can serve every subtest and
// every run. Names left behind by a failed run are session leases of closed
// clients or TTL leases of at most a minute.
//
// Pass FIFO if the backend promises that the waiters of a name are served
// first come, first served; Run then checks the grant order of waiters that
// Inspect has counted in the queue, one after the other. Without FIFO the
// FIFO subtest is skipped, and Run only checks that every waiter is granted
// in turn and none is lost.
//
// Pass Outage if the backend's test can make the store unreachable and
// bring it back (pause a server, stop a majority of replicas); Run then also
// checks the failure-path rules of lock/DESIGN.md while the store is cut:
// calls fail with lock.ErrNoQuorum (and their ctx's error if ctx ended), and
// Release and Refresh return once their lease has ended, whatever their
// ctx, and leave the name free. Without Outage those subtests (Outage*) are
// skipped. Outage's function is called once per outage subtest, so it may
// start a fresh store for each; each outage subtest heals the store before
// it ends, so that later subtests find it serving.
//
// # What the suite checks
//
// Mutual exclusion (I1) and strictly increasing fencing tokens (I2) under
// contention from two clients; hand-off to every waiter (I4); TryAcquire's
// ErrHeld, also from the holder's own Locker (leases are not reentrant);
// withdrawal of an Acquire whose ctx is cancelled or times out, including a
// cancellation that races the grant (I4); the signals of a lease (Done, Err,
// Context and its cause) while held, after Release, after TTL expiry (I3:
// the holder learns first) and after Close; Refresh extending a TTL lease;
// that a stale Release or Refresh cannot touch the next holder; Inspect's
// holder, token, owner, queue length and time left; the input limits of
// package lock, checked before anything else happens; names that stores
// treat specially; lock.Do; and the failure paths (lock/DESIGN.md, R2, R4,
// R5): Refresh and Release of an ended lease return ErrNotHeld wrapping the
// cause even with context.Background(), a queued Acquire whose ctx ended
// returns the ctx's error alone, and, with Outage, the checks above.
//
// For a Locker that implements lock.Elector, lock.Semaphores or
// lock.RWLockers, Run adds a group of subtests per interface (Election,
// Semaphore, ReadWrite; lock/DESIGN.md, "Checking them"): one leader at a
// time, candidates served in order, Leader and Observe (including the
// empty seat, pending states in the store's order, and the old term's
// Done closed before the next term's Campaign returns); at most limit
// permits on distinct slots, served in order; many readers or one writer,
// writer preference, the readers at the head of the queue granted
// together with their own tokens, readers behind a withdrawn writer,
// writer tokens above readers'; for permits and read-write leases, TTL
// expiry (the holder learns first) and Close; type and limit mismatches;
// lock.Lead, DoPermit, DoRead and DoWrite. A group whose first call answers lock.ErrUnsupported is
// skipped with that reason, as is one whose interface the Locker lacks.
//
// Beyond the letter of package lock, the suite expects what its
// documentation implies: when Release or Close returns nil the lease has
// ended (Done is closed, Err is ErrReleased) and the name is free in the
// store; a lease outlives the ctx of the Acquire call that made it; tokens
// are never 0; Info.Name is the inspected name.
//
// The suite waits on channels, or polls Inspect, with generous timeouts (10 s
// per wait) and never sleeps to synchronise, so that it is reliable on slow
// machines and under the race detector. A wait for the outcome of a call
// lasts longer (30 s) than the call's own ctx, so that a call that honours
// its ctx always reports through its outcome, whatever the machine's load;
// "returns once the lease has ended" (R4) is checked the same way, as a
// bound on liveness, never on speed. Timing enters only as lower bounds
// (no grant before a TTL has run out) and in RefreshExtendsTTL, which
// discards an attempt in which the machine itself could not keep a 100 ms
// refresh schedule, and skips after three such attempts; and in
// OutageLateRefresh, which expects the name free within 10 s of the store's
// return although a late Refresh may have extended it by 20 s there.
// Without Outage the suite takes a few seconds against an in-process store;
// its TTLs are 300 and 400 ms. The outage subtests take about half a minute
// more: one lets a 20 s TTL lease end while the store is cut.
package locktest
