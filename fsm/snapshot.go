package fsm

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// snapshotV1 is the format written at protocol level 1, which a build of
// protocol 1 can install.
const snapshotV1 = 1

// Snapshot encodes the whole state deterministically: replicas that applied
// the same entries produce identical bytes. At protocol level 1 it writes
// format 1 (a level-1 state has no stamps and nothing revoked to lose),
// above it format SnapshotVersion.
func (s *State) Snapshot() ([]byte, error) {
	snap := &fsmpb.Snapshot{Version: snapshotV1}
	if s.protocol >= 2 {
		snap.Version, snap.Protocol = SnapshotVersion, uint32(s.protocol)
	}
	for _, id := range slices.Sorted(maps.Keys(s.sessions)) {
		sess := s.sessions[id]
		ps := &fsmpb.Session{Id: id, TtlNs: sess.ttl, Node: sess.node, AckedBelow: sess.ackedBelow, Secret: sess.secret, Owner: sess.owner}
		for _, seq := range slices.Sorted(maps.Keys(sess.results)) {
			ps.Results = append(ps.Results, &fsmpb.CachedResult{Seq: seq, Result: sess.results[seq]})
		}
		snap.Sessions = append(snap.Sessions, ps)
	}
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		l := s.locks[name]
		pl := &fsmpb.Lock{Name: name}
		if s.protocol >= 5 {
			pl.Type, pl.Limit = l.typ, uint32(l.limit)
			for i := range l.holders {
				pl.Holders = append(pl.Holders, leasePB(&l.holders[i]))
			}
		} else {
			pl.Holder = leasePB(&l.holders[0]) // below level 5: a mutex, held
		}
		for _, cl := range l.queue {
			pl.Queue = append(pl.Queue, claimPB(cl))
		}
		snap.Locks = append(snap.Locks, pl)
	}
	snap.TokenFloor = s.tokenFloor
	b, err := marshalOpts.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode snapshot: %w", err)
	}
	return b, nil
}

func leasePB(h *lease) *fsmpb.Lease {
	return &fsmpb.Lease{
		Claim: claimPB(h.claim), Token: h.token, Generation: h.gen, RefreshedUnixNano: h.refreshed,
		GrantedUnixNano: h.granted, Revoked: h.revoked, Slot: uint32(h.slot),
	}
}

func claimPB(c claim) *fsmpb.Claim {
	return &fsmpb.Claim{
		Id: c.id, Session: c.session, Seq: c.seq, Owner: c.owner, TtlNs: c.ttl, QueuedUnixNano: c.queued, Key: c.key, Stream: c.stream,
		Mode: c.mode, Value: c.value,
	}
}

func claimFromPB(c *fsmpb.Claim) claim {
	return claim{
		id: c.GetId(), session: c.GetSession(), seq: c.GetSeq(), owner: c.GetOwner(), ttl: c.GetTtlNs(),
		queued: c.GetQueuedUnixNano(), key: nonEmpty(c.GetKey()), stream: c.GetStream(),
		mode: c.GetMode(), value: c.GetValue(),
	}
}

// Restore decodes a snapshot made by Snapshot (format 1 or 2) into a new
// State. It rejects unknown versions, and a protocol level above Protocol
// (ErrSnapshotVersion), and contents that break the state's invariants
// (ErrCorrupt); it never returns a partial state.
func Restore(data []byte) (*State, error) {
	var snap fsmpb.Snapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrCorrupt, err)
	}
	version := snap.GetVersion()
	if version != snapshotV1 && version != SnapshotVersion {
		return nil, fmt.Errorf("%w: %d (this build reads %d and %d)", ErrSnapshotVersion, version, snapshotV1, SnapshotVersion)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if snapshotHasUnknown(&snap) {
		return nil, corrupt("fields unknown to version %d", version)
	}
	s := New()
	s.locks = make(map[string]*lockState, len(snap.GetLocks()))
	switch level := snap.GetProtocol(); {
	case version == snapshotV1 && hasV2Fields(&snap):
		return nil, corrupt("version 1 with fields of version 2")
	case version == snapshotV1:
	case level > uint32(Protocol):
		return nil, fmt.Errorf("%w: protocol level %d (this build speaks %d)", ErrSnapshotVersion, level, Protocol)
	case level < 2:
		return nil, corrupt("version %d at protocol level %d", version, level)
	default:
		s.protocol = int(level)
	}
	if s.protocol < 3 && hasV3Fields(&snap) {
		return nil, corrupt("level %d with fields of level 3", s.protocol)
	}
	if f := snap.GetTokenFloor(); f != 0 && s.protocol < 4 || f > maxStoredFloor {
		return nil, corrupt("token floor %d at level %d", f, s.protocol)
	}
	s.tokenFloor = snap.GetTokenFloor()
	for _, ps := range snap.GetSessions() {
		id := ps.GetId()
		if id == 0 || ps.GetTtlNs() <= 0 || s.sessions[id] != nil {
			return nil, corrupt("bad or duplicate session %d", id)
		}
		if secret := ps.GetSecret(); len(secret) != 0 && len(secret) != KeyLen || len(secret) == 0 && ps.GetOwner() != "" ||
			len(ps.GetOwner()) > MaxOwnerLen {
			return nil, corrupt("session %d: bad secret or owner", id)
		}
		sess := &session{
			id: id, ttl: ps.GetTtlNs(), node: ps.GetNode(), ackedBelow: ps.GetAckedBelow(),
			results: map[uint64]*fsmpb.Result{}, names: map[string]int{},
			secret: nonEmpty(ps.GetSecret()), owner: ps.GetOwner(),
		}
		if len(ps.GetResults()) > MaxCachedResults {
			return nil, corrupt("session %d: %d cached results, limit %d", id, len(ps.GetResults()), MaxCachedResults)
		}
		for _, r := range ps.GetResults() {
			if r.GetResult() == nil || r.GetSeq() < sess.ackedBelow || len(r.GetResult().GetKey()) != 0 && len(r.GetResult().GetKey()) != KeyLen {
				return nil, corrupt("session %d: bad cached result %d", id, r.GetSeq())
			}
			sess.results[r.GetSeq()] = r.GetResult()
		}
		s.sessions[id] = sess
	}
	claims := make(map[uint64]bool, len(snap.GetLocks())) // claim IDs are Acquire indexes: unique
	unique := func(c claim) error {
		if claims[c.id] {
			return fmt.Errorf("claim %d appears twice", c.id)
		}
		claims[c.id] = true
		return nil
	}
	for _, pl := range snap.GetLocks() {
		name := pl.GetName()
		if !validName(name) || s.locks[name] != nil {
			return nil, corrupt("bad or duplicate lock %q", name)
		}
		l, err := restoreLock(s, pl, unique)
		if err != nil {
			return nil, corrupt("lock %q: %v", name, err)
		}
		s.locks[name] = l
		for _, h := range l.holders {
			if s.sessions[h.claim.session] == nil {
				s.orphan(h.claim.session, name) // a lease that outlived its session
			}
		}
	}
	return s, nil
}

// restoreLock decodes and checks lock pl (DESIGN.md, "Protocol 5",
// Snapshot): below level 5 a mutex with one holder; from level 5 a type,
// a limit that fits it and holders that fit both, in token order, with a
// queue whose head the holders do not admit. unique checks claim IDs
// across the snapshot.
func restoreLock(s *State, pl *fsmpb.Lock, unique func(claim) error) (*lockState, error) {
	name := pl.GetName()
	l := &lockState{typ: pl.GetType(), limit: int(pl.GetLimit())}
	leases := pl.GetHolders()
	switch {
	case s.protocol < 5 && (len(leases) > 0 || l.typ != 0 || l.limit != 0):
		return nil, fmt.Errorf("fields of level 5 at level %d", s.protocol)
	case s.protocol < 5:
		leases = []*fsmpb.Lease{pl.GetHolder()}
	case pl.GetHolder() != nil:
		return nil, fmt.Errorf("a single holder at level %d", s.protocol)
	}
	if err := checkType(l); err != nil {
		return nil, err
	}
	for _, pb := range leases {
		h, err := restoreLease(s, name, pb, unique)
		if err != nil {
			return nil, err
		}
		if n := len(l.holders); n > 0 && h.token <= l.holders[n-1].token {
			return nil, fmt.Errorf("holder tokens %d then %d: not increasing", l.holders[n-1].token, h.token)
		}
		if !l.admits(h.claim) || l.typ == fsmpb.LockType_LOCK_TYPE_SEMAPHORE && (h.slot >= l.limit || slices.ContainsFunc(l.holders, func(o lease) bool { return o.slot == h.slot })) {
			return nil, fmt.Errorf("holder %d does not fit a %s beside the holders before it", h.token, l.typ)
		}
		if err := checkShape(l, h.claim); err != nil {
			return nil, err
		}
		if h.slot != 0 && l.typ != fsmpb.LockType_LOCK_TYPE_SEMAPHORE {
			return nil, fmt.Errorf("holder %d: slot %d on a %s", h.token, h.slot, l.typ)
		}
		l.holders = append(l.holders, *h)
	}
	if len(l.holders) == 0 {
		return nil, fmt.Errorf("no holder")
	}
	for _, pc := range pl.GetQueue() {
		qc, err := restoreClaim(s, name, pc)
		if err == nil {
			err = unique(qc)
		}
		if err == nil {
			err = checkShape(l, qc)
		}
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		if s.sessions[qc.session] == nil {
			return nil, fmt.Errorf("queued claim %d of unknown session %d", qc.id, qc.session)
		}
		l.queue = append(l.queue, qc)
	}
	if len(l.queue) > 0 && l.admits(l.queue[0]) {
		return nil, fmt.Errorf("the head of the queue, claim %d, is admissible", l.queue[0].id)
	}
	return l, oneClaimPerClient(s, name, l)
}

// restoreLease decodes and checks one held lease of name.
func restoreLease(s *State, name string, pb *fsmpb.Lease, unique func(claim) error) (*lease, error) {
	if pb == nil {
		return nil, fmt.Errorf("no holder")
	}
	cl, err := restoreClaim(s, name, pb.GetClaim())
	if err == nil {
		err = unique(cl)
	}
	if err != nil {
		return nil, fmt.Errorf("holder: %w", err)
	}
	// From level 4 a floored grant's token is above its index, the
	// generation it starts with (DESIGN.md, "Protocol 4").
	if pb.GetToken() == 0 || s.protocol < 4 && pb.GetGeneration() < pb.GetToken() {
		return nil, fmt.Errorf("token %d, generation %d", pb.GetToken(), pb.GetGeneration())
	}
	// While a floor is in use it is at least every lease's token
	// (DESIGN.md, "Protocol 4": it moves up to each floored token).
	if s.tokenFloor != 0 && pb.GetToken() > s.tokenFloor {
		return nil, fmt.Errorf("token %d above the token floor %d", pb.GetToken(), s.tokenFloor)
	}
	if (cl.ttl == 0 || pb.GetRevoked()) && s.sessions[cl.session] == nil {
		return nil, fmt.Errorf("session or revoked lease of unknown session %d", cl.session)
	}
	if pb.GetSlot() != 0 && s.protocol < 5 {
		return nil, fmt.Errorf("a slot at level %d", s.protocol)
	}
	return &lease{
		claim: cl, token: pb.GetToken(), gen: pb.GetGeneration(), refreshed: pb.GetRefreshedUnixNano(),
		granted: pb.GetGrantedUnixNano(), revoked: pb.GetRevoked(), slot: int(pb.GetSlot()),
	}, nil
}

// checkType checks a lock's type and limit: a known type, and a limit of
// 1 to MaxPermits on a semaphore, 0 elsewhere.
func checkType(l *lockState) error {
	switch l.typ {
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		if l.limit >= 1 && l.limit <= MaxPermits {
			return nil
		}
	case fsmpb.LockType_LOCK_TYPE_MUTEX, fsmpb.LockType_LOCK_TYPE_READ_WRITE, fsmpb.LockType_LOCK_TYPE_ELECTION:
		if l.limit == 0 {
			return nil
		}
	default:
		return fmt.Errorf("unknown type %d", l.typ)
	}
	return fmt.Errorf("a %s of limit %d", l.typ, l.limit)
}

// checkShape checks a claim's mode and value against its lock's type: a
// mode (read or write) on every claim of a read-write lock and none
// elsewhere, a value only on an election.
func checkShape(l *lockState, cl claim) error {
	rw := l.typ == fsmpb.LockType_LOCK_TYPE_READ_WRITE
	switch {
	case rw != (cl.mode == fsmpb.Mode_MODE_READ || cl.mode == fsmpb.Mode_MODE_WRITE) || !rw && cl.mode != 0:
		return fmt.Errorf("claim %d: mode %s on a %s", cl.id, cl.mode, l.typ)
	case cl.value != "" && l.typ != fsmpb.LockType_LOCK_TYPE_ELECTION:
		return fmt.Errorf("claim %d: a value on a %s", cl.id, l.typ)
	case len(cl.value) > MaxOwnerLen:
		return fmt.Errorf("claim %d: a value of %d bytes", cl.id, len(cl.value))
	}
	return nil
}

// maxStoredFloor bounds the token floor in a snapshot: it is a FloorToken
// floor (at most MaxTokenFloor) or a token granted above one, and
// MaxTokenFloor more grants than that will not happen.
const maxStoredFloor = 2 * MaxTokenFloor

// oneClaimPerClient checks that no live client session has two claims on
// lock l of name.
func oneClaimPerClient(s *State, name string, l *lockState) error {
	if len(l.queue)+len(l.holders) <= 1 {
		return nil // one claim
	}
	seen := map[uint64]bool{}
	claims := make([]claim, 0, len(l.holders)+len(l.queue))
	for _, h := range l.holders {
		claims = append(claims, h.claim)
	}
	for _, cl := range append(claims, l.queue...) {
		if sess := s.sessions[cl.session]; sess != nil && sess.secret != nil {
			if seen[cl.session] {
				return fmt.Errorf("lock %q: client session %d has two claims", name, cl.session)
			}
			seen[cl.session] = true
		}
	}
	return nil
}

// nonEmpty is b, or nil if it is empty.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// hasV3Fields reports whether snap sets a field of level 3.
func hasV3Fields(snap *fsmpb.Snapshot) bool {
	for _, ps := range snap.GetSessions() {
		if len(ps.GetSecret()) != 0 || ps.GetOwner() != "" {
			return true
		}
		for _, r := range ps.GetResults() {
			if len(r.GetResult().GetKey()) != 0 {
				return true
			}
		}
	}
	v3 := func(c *fsmpb.Claim) bool { return len(c.GetKey()) != 0 || c.GetStream() != 0 }
	for _, pl := range snap.GetLocks() {
		if v3(pl.GetHolder().GetClaim()) || slices.ContainsFunc(pl.GetQueue(), v3) ||
			slices.ContainsFunc(pl.GetHolders(), func(h *fsmpb.Lease) bool { return v3(h.GetClaim()) }) {
			return true
		}
	}
	return false
}

// hasV2Fields reports whether snap sets a field that format 1 does not
// have: in a version-1 snapshot that is corruption, as an unknown field is.
func hasV2Fields(snap *fsmpb.Snapshot) bool {
	if snap.GetProtocol() != 0 {
		return true
	}
	for _, ps := range snap.GetSessions() {
		for _, r := range ps.GetResults() {
			if r.GetResult().GetGeneration() != 0 || r.GetResult().GetTtlNs() != 0 {
				return true
			}
		}
	}
	for _, pl := range snap.GetLocks() {
		h := pl.GetHolder()
		if h.GetGrantedUnixNano() != 0 || h.GetRevoked() || h.GetClaim().GetQueuedUnixNano() != 0 {
			return true
		}
		for _, c := range pl.GetQueue() {
			if c.GetQueuedUnixNano() != 0 {
				return true
			}
		}
	}
	return false
}

// restoreClaim validates c and counts it in its session's names.
func restoreClaim(s *State, name string, c *fsmpb.Claim) (claim, error) {
	if c == nil || c.GetId() == 0 || c.GetSession() == 0 {
		return claim{}, fmt.Errorf("missing claim, ID or session")
	}
	if len(c.GetOwner()) > MaxOwnerLen || !validLeaseTTL(c.GetTtlNs()) {
		return claim{}, fmt.Errorf("claim %d: bad owner or TTL", c.GetId())
	}
	if k := c.GetKey(); len(k) != 0 && len(k) != KeyLen || c.GetStream() != 0 && c.GetStream() == c.GetSession() {
		return claim{}, fmt.Errorf("claim %d: bad key or stream", c.GetId())
	}
	if sess := s.sessions[c.GetSession()]; sess != nil {
		if (sess.secret != nil) != (c.GetStream() != 0) {
			// A live client session's claims always have a stream (the
			// client session is never one), a node session's never.
			return claim{}, fmt.Errorf("claim %d: stream %d for session %d", c.GetId(), c.GetStream(), c.GetSession())
		}
		sess.names[name]++
	}
	return claimFromPB(c), nil
}

// snapshotHasUnknown is hasUnknown for a snapshot, walking its message
// types by name rather than by reflection: Restore of a million locks spent
// a sixth of its time in the reflective walk.
// TestSnapshotHasUnknown_EveryMessage keeps it in step with the schema.
func snapshotHasUnknown(snap *fsmpb.Snapshot) bool {
	unknown := func(m protoreflect.ProtoMessage) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }
	claim := func(c *fsmpb.Claim) bool { return c != nil && unknown(c) }
	if unknown(snap) {
		return true
	}
	for _, ps := range snap.GetSessions() {
		if unknown(ps) {
			return true
		}
		for _, r := range ps.GetResults() {
			if unknown(r) || r.GetResult() != nil && unknown(r.GetResult()) {
				return true
			}
		}
	}
	for _, pl := range snap.GetLocks() {
		if unknown(pl) {
			return true
		}
		if h := pl.GetHolder(); h != nil && (unknown(h) || claim(h.GetClaim())) {
			return true
		}
		for _, h := range pl.GetHolders() {
			if unknown(h) || claim(h.GetClaim()) {
				return true
			}
		}
		for _, c := range pl.GetQueue() {
			if claim(c) {
				return true
			}
		}
	}
	return false
}

// hasUnknown reports whether m, or a message inside it, carries fields this
// build does not know. In a command that is forward compatibility; in a
// snapshot of a known version it is corruption (a flipped wire type turns a
// whole session or lock into an unknown field) or a format change without a
// version bump, and restoring would silently drop state.
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len() && !found; i++ {
				found = hasUnknown(v.List().Get(i).Message())
			}
		default:
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}
