// Package history records what clients of a lock.Locker saw, runs their
// writes through a fenced resource, and checks the result against the
// safety invariants defined in lock/DESIGN.md (I1 mutual exclusion, I2 fencing, I3
// holder learns first). It is the checking half of the Jepsen-style cluster
// tests: the harness injects faults, this package judges the history.
//
// # Recording
//
// A Recorder hands out ticks of one logical clock: each invocation and each
// return takes the next tick, under one mutex, so "a returned before b was
// invoked" is exactly a.Return < b.Call, with no clock-resolution ties. Wall
// time (monotonic, from the Recorder's start) is kept next to the ticks for
// people reading a dump. Use the wrappers (Recorder.Acquire, TryAcquire,
// Release, Refresh, Observe, Inspect) or Invoke + Invocation.Return around
// any other client (an HTTP one, say). Errors map to outcomes with Classify:
// lock.ErrHeld and lock.ErrNotHeld are definite answers, invalid names and
// options are Failed (ignored), and every other error (timeout, no quorum,
// cancelled, closed) is Unknown: the call may have taken effect, or not, at
// any time after it was invoked. An operation still running when History is
// taken is Pending and counts as Unknown.
//
// # The fence
//
// A Fence is the resource the lock protects, fenced as in Kleppmann's "How
// to do distributed locking": it refuses a write whose token is below the
// greatest it has admitted for the name. A write has a start (admission)
// and an end (commit, refused if a greater token was admitted meanwhile),
// so committed writes of different tokens never overlap. A holder whose
// lease ended while it was paused may still get a write in, as long as no
// later holder has written: that is what fencing promises, no more.
//
// # The lock model (linearizability)
//
// Each name is checked on its own with porcupine (partitioned by name).
// A lease can end without any client operation: expiry of a TTL lease,
// session loss, its Locker closing, a crashed holder. So the sequential
// model lets every lease end at any moment, unobserved. State per name:
// whether the store may hold a lease and its token ("unknown" for a grant
// whose caller got an error), and a lower bound for the next token. In a
// linearization:
//
//   - Acquire/TryAcquire -> ok(t): t is at least the bound; the name is now
//     held by t and the bound becomes t+1. A previous holder has implicitly
//     ended: mutual exclusion is not assumed here, it is checked through
//     what holders report afterwards (below).
//   - TryAcquire -> held: some lease is held (possibly one its client has
//     already given up: the store holds it until it expires).
//   - Release(t) -> ok: t is the holder; afterwards the name is free.
//   - Refresh(t) -> ok, Observe(t) -> held: t is the holder.
//   - Inspect -> held(t): t is the holder (or the token, now learnt, of a
//     grant of unknown outcome); Inspect -> free: the name is free.
//
// The model never steps "expire" on its own: keeping a lease that may have
// ended is never less permissive than ending it (whatever is legal on a
// free name is legal, with an equally permissive state, on a held one), so
// this deterministic model accepts exactly the histories that the
// nondeterministic "may expire any time" model does.
//
// Some operations are left out of the search because they cannot make a
// history illegal there, only slow the search down: Release, Refresh and
// Observe that found the lease ended (always possible; their one
// consequence, that the lease is never reported held again, is checked
// directly by HeldAfterEnd: porcupine can always place them at their
// return, so nothing is lost), Release, Refresh and Inspect of unknown
// outcome (a Release that may have happened is no stronger than the
// spontaneous end; the others are reads), Failed calls, and fence writes
// (checked directly).
//
// Grants of unknown outcome (an Acquire that timed out, lost quorum, was
// cancelled, or never returned) may have granted the name at any time after
// their call, with a token nobody learnt, or never (a cancelled Acquire may
// be granted and released at once: the same thing here). The usual porcupine
// encoding, an operation that returns after everything else, makes the
// search visit every subset of such operations open at once. But such a
// grant only ever matters one way: it makes the name held by a lease nobody
// can report held, which the next recorded grant replaces. That helps only
// an operation that needs the name held (TryAcquire -> held; Inspect -> a
// token no recorded grant returned). So such an operation may find the name
// held by an unknown grant whenever some grant of unknown outcome of the
// name was invoked before it returned.
//
// Recorded grants must be linearized in token order (tokens strictly
// increase along any linearization, and every grant is in it), so each is
// tied to its predecessor in token order: the same verdicts, but the search
// never tries a grant early. Without that, one long-waiting Acquire (early
// call, late token) sends the search through every order of the operations
// around it, and 16 contending clients time out at a few thousand
// operations; with it, on a 2-core machine, a correct history of 60,000
// operations on one name checks in about 2 s, and a 16,000-operation
// history with one stale holder at the end is proven illegal in about 2 s.
//
// What linearizability then establishes: tokens increase in grant order;
// a lease reported held (Release ok, Refresh ok, Observe held, Inspect) was
// the latest grant at that moment and had not been released since;
// TryAcquire says held only when something can be held; Inspect agrees
// with the grants and with Release.
//
// # Direct checks
//
// Each direct check names the property it breaks (ViolationKind), which
// reads better than "not linearizable" and covers the fence:
//
//   - TokenOrder, DuplicateToken (I2): any grant invoked after another grant
//     (or an Inspect) returned carries a greater token; no token twice.
//   - HeldAfterEnd (I1, I3): a lease reported held after it had provably
//     ended: a greater token had been granted or reported, its Release had
//     succeeded, Inspect had reported the name free, or its own client had
//     been told it ended. Two grants of one name "at once" are caught this
//     way when the first holder later proves it still held its lease.
//   - UngrantedToken: an accepted write or a successful Release, Refresh or
//     Observe uses a token no recorded grant returned, or uses it before
//     that grant was invoked (a grant handed out before it was committed
//     shows up like this, or as a duplicate or backward token).
//   - FenceStale, FenceOverlap: the fence accepted a token below one it had
//     accepted before, or accepted overlapping writes of different tokens.
//     A correct Fence cannot do either; these catch a broken resource.
//
// # Limits
//
// Since any lease may have expired unobserved, two overlapping grants are
// only a violation when some operation shows the older lease still held
// after the newer one was granted (or the store reports otherwise). A test
// that wants mutual exclusion checked has holders confirm their lease (with
// Observe, Refresh, or a successful Release) after their critical section.
// Observe trusts I3: a paused holder cannot observe anything, and once it
// resumes its lease must already read as ended. The token of an unknown
// grant is not known, so it does not raise the lower bound for later
// tokens, and only an Inspect can tie it down. Unknown grants are
// generous: one of them may explain several "held" answers, even on both
// sides of a recorded grant, and one invoked after an answer's
// linearization point but before its return may explain it (missed
// violations, never false ones; counting them exactly multiplies the
// search's states by every possible count). Every client of one check must
// record into one Recorder in one process (multi-process tests record on
// the client side). Porcupine's search is exponential in the worst case,
// and proving a long history illegal costs far more than accepting a legal
// one; Options.Timeout bounds it, and running out is a failure
// (CheckIncomplete), not a pass.
//
// # Elections
//
// An election (lock.Elector) is judged by its own history and checker,
// not the lock model: ElectionRecorder records each Campaign (call,
// return, token), what its candidate saw of the term (the last look that
// found it held, the first that found it ended, each Proclaim, the
// resign), and each state an observer received from Observe or Leader
// answered (a Sighting), all on one logical clock. Every Campaign's value
// is unique, so every observed state names the call it came from.
// CheckElection reports:
//
//   - TwoLeaders (I1, I3): a term seen held after a term with a greater
//     token was elected, i.e. its Campaign returned or a Sighting showed
//     it. Tokens follow the store's grant order, so this is "the old
//     leader's Done closes before the new one is elected". When Done
//     closed is known only between two looks; the check uses the last look
//     that found the term held (no false alarms), so candidates should
//     look often.
//   - TokenOrder, DuplicateToken (I2): a Campaign's token exceeds every
//     token elected before it was invoked; no token belongs to two
//     Campaigns. (Order of Campaign returns alone proves nothing: a
//     Campaign may return a term that already ended and was succeeded.)
//   - ObservedBackward: an observer's elected tokens never decrease, across
//     its streams too.
//   - ObservedUngranted: an elected state names a Campaign (or one of its
//     term's Proclaims) invoked before it was received and not refused,
//     with that Campaign's token if it returned one. A Campaign that ended
//     without a definite answer (Unknown: timeout, no quorum, its node
//     stopped) may have been granted all the same, its caller gone; its
//     token is then learnt from the Sightings and checked like the others.
//
// Convergence and liveness need the live system and are left to the test
// (cluster_test's TestElectionNemesis).
//
// # Many holders
//
// Semaphores and read-write locks have many holders at once, which
// neither the lock model nor the election checks judge. A GrantRecorder
// records each Acquire (AcquirePermit, AcquireRead, AcquireWrite) with its
// mode, token and slot, and the holder's looks at the lease: the last look
// that found it held and the first that found it ended. CheckGrants
// judges a GrantHistory on the intervals [Acquire returned, last look
// held], during which the lease was surely live: the store granted it
// before the return, and its Done, which closes before the store can
// grant a conflicting lease (I3), had not closed at the look. A late look
// can hide a violation, never invent one.
//
//   - OverLimit, SlotShared: never more than limit permits of a semaphore
//     live at one tick, never two live permits on one slot.
//   - ReadWriteOverlap, TwoWriters: never a live read and a live write of
//     a name at one tick, never two live writes.
//   - DuplicateToken, TokenOrder (I2): the tokens of a name are distinct;
//     a write's token exceeds the token of every grant of its name that
//     returned before the write's Acquire was invoked.
//
// Liveness is left to the test (cluster_test's TestSemaphoreNemesis).
//
// # Failures
//
// Check returns a Result with the violations; when anything fails it also
// writes three files to Options.Dir: porcupine's HTML visualisation of the
// names with violations (one row per client, labelled with the client ID;
// the operations porcupine does not check, such as fence writes, grants of
// unknown outcome and "not held" answers, drawn as annotations on their
// client's row; violations on a row of their own), the history as JSON
// (replayable: unmarshal into History and call Check), and a text report.
// Require does all that and fails the test with the paths.
package history
