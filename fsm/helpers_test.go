package fsm

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Command builders. Every request-carrying builder takes (session, seq);
// acked_below is left 0 unless set with withAcked.

const sessTTL = 10 * time.Second

func rq(session, seq uint64) *fsmpb.Request {
	return &fsmpb.Request{Session: session, Seq: seq}
}

func cmdOpen(session uint64, ttl time.Duration, node string) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: rq(session, 0), TtlNs: int64(ttl), Node: node,
	}}}
}

func cmdClose(session, seq uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{Req: rq(session, seq)}}}
}

func cmdExpireSession(session uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: session}}}
}

type acqOpt func(*fsmpb.Acquire)

func withTTL(d time.Duration) acqOpt { return func(a *fsmpb.Acquire) { a.TtlNs = int64(d) } }
func withOwner(o string) acqOpt      { return func(a *fsmpb.Acquire) { a.Owner = o } }
func withTry() acqOpt                { return func(a *fsmpb.Acquire) { a.Try = true } }

// Protocol 5: a semaphore of limit n, a read-write lock in mode m, an
// election with value v.
func withSemaphore(n uint32) acqOpt {
	return func(a *fsmpb.Acquire) { a.Type, a.Limit = fsmpb.LockType_LOCK_TYPE_SEMAPHORE, n }
}
func withMode(m fsmpb.Mode) acqOpt {
	return func(a *fsmpb.Acquire) { a.Type, a.Mode = fsmpb.LockType_LOCK_TYPE_READ_WRITE, m }
}
func withValue(v string) acqOpt {
	return func(a *fsmpb.Acquire) { a.Type, a.Value = fsmpb.LockType_LOCK_TYPE_ELECTION, v }
}

func cmdAcquire(session, seq uint64, name string, opts ...acqOpt) *fsmpb.Command {
	a := &fsmpb.Acquire{Req: rq(session, seq), Name: name}
	for _, o := range opts {
		o(a)
	}
	return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
}

func cmdRelease(session, seq uint64, name string, token uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: rq(session, seq), Name: name, Token: token}}}
}

func cmdRefresh(session, seq uint64, name string, token uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: rq(session, seq), Name: name, Token: token}}}
}

func cmdCancel(session, seq uint64, name string, claim uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: rq(session, seq), Name: name, Claim: claim}}}
}

func cmdExpireLease(name string, token, gen uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_ExpireLease{ExpireLease: &fsmpb.ExpireLease{Name: name, Token: token, Generation: gen}}}
}

func cmdSetProtocol(level uint32) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: level}}}
}

func cmdRevoke(session, seq uint64, name string, token uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{Req: rq(session, seq), Name: name, Token: token}}}
}

func cmdEndRevoked(name string, token uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_EndRevoked{EndRevoked: &fsmpb.EndRevoked{Name: name, Token: token}}}
}

func cmdAdopt(session, seq uint64, name string, token uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: &fsmpb.Adopt{Req: rq(session, seq), Name: name, Token: token}}}
}

// withStamp sets the leader stamp of cmd.
func withStamp(cmd *fsmpb.Command, stamp int64) *fsmpb.Command {
	cmd.StampUnixNano = stamp
	return cmd
}

// withAcked sets acked_below on the request of cmd.
func withAcked(cmd *fsmpb.Command, ackedBelow uint64) *fsmpb.Command {
	reqOf(cmd).AckedBelow = ackedBelow
	return cmd
}

// reqOf returns the Request of cmd, or nil for commands without one.
func reqOf(cmd *fsmpb.Command) *fsmpb.Request {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_OpenSession:
		return op.OpenSession.GetReq()
	case *fsmpb.Command_CloseSession:
		return op.CloseSession.GetReq()
	case *fsmpb.Command_Acquire:
		return op.Acquire.GetReq()
	case *fsmpb.Command_Release:
		return op.Release.GetReq()
	case *fsmpb.Command_Refresh:
		return op.Refresh.GetReq()
	case *fsmpb.Command_Cancel:
		return op.Cancel.GetReq()
	case *fsmpb.Command_Revoke:
		return op.Revoke.GetReq()
	case *fsmpb.Command_Adopt:
		return op.Adopt.GetReq()
	case *fsmpb.Command_FloorToken:
		return op.FloorToken.GetReq()
	}
	return nil
}

// Result builders.

func res(c fsmpb.Code) *fsmpb.Result { return &fsmpb.Result{Code: c} }

func resOK() *fsmpb.Result { return res(fsmpb.Code_CODE_OK) }

func resGranted(token, claim uint64) *fsmpb.Result {
	return &fsmpb.Result{Code: fsmpb.Code_CODE_GRANTED, Token: token, Claim: claim}
}

func resQueued(claim uint64) *fsmpb.Result {
	return &fsmpb.Result{Code: fsmpb.Code_CODE_QUEUED, Claim: claim}
}

// mustApply applies cmds at indexes 1, 2, ... and returns the state.
func mustApply(t testing.TB, cmds ...*fsmpb.Command) *State {
	t.Helper()
	s := New()
	for i, cmd := range cmds {
		_, _, err := s.Apply(uint64(i+1), cmd)
		require.NoError(t, err, "setup command %d: %v", i+1, cmd)
	}
	return s
}

func mustSnapshot(t testing.TB, s *State) []byte {
	t.Helper()
	b, err := s.Snapshot()
	require.NoError(t, err)
	return b
}

// decodeSnapshot returns the protobuf view of s.
func decodeSnapshot(t testing.TB, s *State) *fsmpb.Snapshot {
	t.Helper()
	var snap fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(mustSnapshot(t, s), &snap))
	return &snap
}

// locksOf returns the locks part of the snapshot of s (nil if none).
func locksOf(t testing.TB, s *State) []*fsmpb.Lock {
	t.Helper()
	return decodeSnapshot(t, s).GetLocks()
}

// queueOf returns the claim IDs queued on name, in order.
func queueOf(s *State, name string) []uint64 {
	l := s.locks[name]
	if l == nil {
		return nil
	}
	var ids []uint64
	for _, cl := range l.queue {
		ids = append(ids, cl.id)
	}
	return ids
}

// cachedSeqs returns the seqs with a cached result in session id.
func cachedSeqs(s *State, id uint64) []uint64 {
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(sess.results))
}

// checkInvariants verifies the structural invariants of s. It returns an
// error rather than failing so that the property test and the fuzzers can
// add their own context.
func checkInvariants(s *State) error {
	var snap fsmpb.Snapshot
	b, err := s.Snapshot()
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, &snap); err != nil {
		return err
	}
	// The protocol level: format 1 at level 1 with nothing of format 2 in
	// it, format 2 above.
	switch level := s.Protocol(); {
	case level < 1 || level > Protocol:
		return fmt.Errorf("protocol level %d", level)
	case level == 1 && (snap.GetVersion() != 1 || hasV2Fields(&snap)):
		return fmt.Errorf("level 1 snapshot: version %d, format-2 fields %v", snap.GetVersion(), hasV2Fields(&snap))
	case level >= 2 && (snap.GetVersion() != SnapshotVersion || snap.GetProtocol() != uint32(level)):
		return fmt.Errorf("level %d snapshot: version %d, protocol %d", level, snap.GetVersion(), snap.GetProtocol())
	}
	sessions := map[uint64]bool{}
	for _, ps := range snap.GetSessions() {
		sessions[ps.GetId()] = true
		if n := len(ps.GetResults()); n > MaxCachedResults {
			return fmt.Errorf("session %d caches %d results", ps.GetId(), n)
		}
		for _, r := range ps.GetResults() {
			if r.GetSeq() < ps.GetAckedBelow() {
				return fmt.Errorf("session %d caches seq %d below acked %d", ps.GetId(), r.GetSeq(), ps.GetAckedBelow())
			}
		}
	}
	// want[session][name] = number of claims (held or queued) of that live
	// session on name: the session's names index must match it.
	want := map[uint64]map[string]int{}
	count := func(session uint64, name string) {
		if !sessions[session] {
			return
		}
		if want[session] == nil {
			want[session] = map[string]int{}
		}
		want[session][name]++
	}
	// Every claim's ID (the index of its Acquire entry) is unique in the
	// whole state. (Its (session, seq) need not be: a session ID is the
	// client's choice, and a session expired with a TTL lease can be
	// opened again.)
	ids := map[uint64]bool{}
	unique := func(name string, c *fsmpb.Claim) error {
		if ids[c.GetId()] {
			return fmt.Errorf("lock %q: claim %d not unique", name, c.GetId())
		}
		ids[c.GetId()] = true
		return nil
	}
	clients := map[uint64]bool{} // live client sessions
	for _, ps := range snap.GetSessions() {
		if len(ps.GetSecret()) > 0 {
			clients[ps.GetId()] = true
		}
	}
	for _, pl := range snap.GetLocks() {
		// Protocol 3: one claim per live client session and name; a claim's
		// stream is never its own session.
		mine := map[uint64]bool{}
		var claims []*fsmpb.Claim
		for _, h := range leasesOf(pl) {
			claims = append(claims, h.GetClaim())
		}
		for _, c := range append(claims, pl.GetQueue()...) {
			if clients[c.GetSession()] && mine[c.GetSession()] {
				return fmt.Errorf("lock %q: client session %d has two claims", pl.GetName(), c.GetSession())
			}
			mine[c.GetSession()] = true
			if c.GetStream() != 0 && c.GetStream() == c.GetSession() {
				return fmt.Errorf("lock %q: claim %d is its own stream", pl.GetName(), c.GetId())
			}
		}
		for _, h := range leasesOf(pl) {
			if err := unique(pl.GetName(), h.GetClaim()); err != nil {
				return err
			}
		}
		for _, qc := range pl.GetQueue() {
			if err := unique(pl.GetName(), qc); err != nil {
				return err
			}
		}
	}
	for _, pl := range snap.GetLocks() {
		name := pl.GetName()
		if len(leasesOf(pl)) == 0 {
			// No holder: either an empty lock that should have been deleted,
			// or waiters nobody will wake (I4).
			return fmt.Errorf("lock %q has no holder (queue %d)", name, len(pl.GetQueue()))
		}
		for _, h := range leasesOf(pl) {
			// From level 4 a floored grant's token is above its generation.
			if h.GetToken() == 0 || s.Protocol() < 4 && h.GetGeneration() < h.GetToken() {
				return fmt.Errorf("lock %q: token %d generation %d", name, h.GetToken(), h.GetGeneration())
			}
			hc := h.GetClaim()
			if hc.GetTtlNs() == 0 && !sessions[hc.GetSession()] {
				return fmt.Errorf("lock %q: session lease of dead session %d", name, hc.GetSession())
			}
			if h.GetRevoked() && !sessions[hc.GetSession()] {
				return fmt.Errorf("lock %q: revoked lease of dead session %d", name, hc.GetSession())
			}
			count(hc.GetSession(), name)
		}
		if err := checkHolders(pl); err != nil {
			return fmt.Errorf("lock %q: %w", name, err)
		}
		for _, qc := range pl.GetQueue() {
			if !sessions[qc.GetSession()] {
				return fmt.Errorf("lock %q: queued claim %d of dead session %d", name, qc.GetId(), qc.GetSession())
			}
			count(qc.GetSession(), name)
		}
	}
	if err := checkTokenFloor(s, &snap); err != nil {
		return err
	}
	if s.SessionCount() != len(s.Sessions()) || s.LockCount() != len(s.locks) {
		return fmt.Errorf("counts: %d sessions (listed %d), %d locks (held %d)", s.SessionCount(), len(s.Sessions()), s.LockCount(), len(s.locks))
	}
	if len(s.sessions) != len(sessions) || len(s.locks) != len(snap.GetLocks()) {
		return fmt.Errorf("snapshot has %d sessions, %d locks; state %d, %d",
			len(sessions), len(snap.GetLocks()), len(s.sessions), len(s.locks))
	}
	for id, sess := range s.sessions {
		got := sess.names
		if len(got) == 0 {
			got = nil
		}
		w := want[id]
		if !maps.Equal(got, w) {
			return fmt.Errorf("session %d names index %v, claims say %v", id, got, w)
		}
	}
	return checkOrphans(s)
}

// leasesOf is the held leases of a snapshot's lock: its holders from
// level 5, its one holder below.
func leasesOf(pl *fsmpb.Lock) []*fsmpb.Lease {
	if pl.GetHolder() != nil {
		return []*fsmpb.Lease{pl.GetHolder()}
	}
	return pl.GetHolders()
}

// checkHolders checks a lock's holders and queue head against its type
// (fsm/DESIGN.md, "Protocol 5"), written out apart from the state's own
// admits so that a mistake there is not checked against itself: at most
// one holder of a mutex or an election; at most limit permits on
// distinct slots below it; readers only or one writer; tokens increasing;
// modes on read-write claims only, values on election claims only; and
// a queue head that could not be granted.
func checkHolders(pl *fsmpb.Lock) error {
	hs, limit := leasesOf(pl), int(pl.GetLimit())
	writers, readers, slots := 0, 0, map[uint32]bool{}
	for i, h := range hs {
		if i > 0 && h.GetToken() <= hs[i-1].GetToken() {
			return fmt.Errorf("holder tokens %d then %d", hs[i-1].GetToken(), h.GetToken())
		}
		switch h.GetClaim().GetMode() {
		case fsmpb.Mode_MODE_WRITE:
			writers++
		case fsmpb.Mode_MODE_READ:
			readers++
		}
		if slots[h.GetSlot()] {
			return fmt.Errorf("two permits on slot %d", h.GetSlot())
		}
		if pl.GetType() == fsmpb.LockType_LOCK_TYPE_SEMAPHORE {
			slots[h.GetSlot()] = true
		}
	}
	claims := pl.GetQueue()
	for _, h := range hs {
		claims = append(claims, h.GetClaim())
	}
	for _, c := range claims {
		rw := pl.GetType() == fsmpb.LockType_LOCK_TYPE_READ_WRITE
		if rw != (c.GetMode() != fsmpb.Mode_MODE_UNSPECIFIED) || c.GetValue() != "" && pl.GetType() != fsmpb.LockType_LOCK_TYPE_ELECTION {
			return fmt.Errorf("claim %d: mode %s, value %q on a %s", c.GetId(), c.GetMode(), c.GetValue(), pl.GetType())
		}
	}
	var headFits bool
	switch pl.GetType() {
	case fsmpb.LockType_LOCK_TYPE_MUTEX, fsmpb.LockType_LOCK_TYPE_ELECTION:
		if len(hs) > 1 || limit != 0 {
			return fmt.Errorf("%d holders, limit %d", len(hs), limit)
		}
		headFits = len(hs) == 0
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		if limit < 1 || limit > MaxPermits || len(hs) > limit {
			return fmt.Errorf("%d permits of limit %d", len(hs), limit)
		}
		for slot := range slots {
			if int(slot) >= limit {
				return fmt.Errorf("slot %d of limit %d", slot, limit)
			}
		}
		headFits = len(hs) < limit
	case fsmpb.LockType_LOCK_TYPE_READ_WRITE:
		if limit != 0 || writers > 1 || writers == 1 && readers > 0 {
			return fmt.Errorf("%d writers beside %d readers, limit %d", writers, readers, limit)
		}
		if q := pl.GetQueue(); len(q) > 0 && q[0].GetMode() == fsmpb.Mode_MODE_READ {
			headFits = writers == 0
		} else {
			headFits = len(hs) == 0
		}
	default:
		return fmt.Errorf("type %d", pl.GetType())
	}
	if len(pl.GetQueue()) > 0 && headFits {
		return fmt.Errorf("the head of the queue, claim %d, could be granted", pl.GetQueue()[0].GetId())
	}
	return nil
}

// claimsOf is every claim of l: its holders' in token order, then its
// queue.
func claimsOf(l *lockState) []claim {
	out := make([]claim, 0, len(l.holders)+len(l.queue))
	for _, h := range l.holders {
		out = append(out, h.claim)
	}
	return append(out, l.queue...)
}

// checkOrphans checks the orphans index against the locks: exactly the
// leases whose session is gone, by that session.
func checkOrphans(s *State) error {
	want := map[uint64]map[string]int{}
	for name, l := range s.locks {
		for _, h := range l.holders {
			if id := h.claim.session; s.sessions[id] == nil {
				if want[id] == nil {
					want[id] = map[string]int{}
				}
				want[id][name]++
			}
		}
	}
	if len(want) != len(s.orphans) {
		return fmt.Errorf("orphans index %v, locks say %v", s.orphans, want)
	}
	for id, names := range want {
		if !maps.Equal(names, s.orphans[id]) {
			return fmt.Errorf("orphans of session %d: index %v, locks say %v", id, s.orphans[id], names)
		}
	}
	return nil
}

// checkTokenFloor checks the token floor (protocol 4): none below level 4,
// and, while there is one, at least every lease's token (DESIGN.md,
// "Canonical").
func checkTokenFloor(s *State, snap *fsmpb.Snapshot) error {
	f := snap.GetTokenFloor()
	if f != s.tokenFloor {
		return fmt.Errorf("token floor %d, snapshot says %d", s.tokenFloor, f)
	}
	if s.Protocol() < 4 && f != 0 {
		return fmt.Errorf("level %d with token floor %d", s.Protocol(), f)
	}
	for _, pl := range snap.GetLocks() {
		if t := pl.GetHolder().GetToken(); f != 0 && t > f {
			return fmt.Errorf("lock %q: token %d above the token floor %d", pl.GetName(), t, f)
		}
	}
	return nil
}

func requireInvariants(t testing.TB, s *State) {
	t.Helper()
	require.NoError(t, checkInvariants(s))
}
