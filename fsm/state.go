package fsm

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// EventKind says what changed.
type EventKind uint8

// Event kinds.
const (
	EventGranted       EventKind = iota + 1 // a claim became the holder
	EventEnded                              // a lease ended (Reason says why)
	EventWithdrawn                          // a queued claim left the queue without a grant
	EventRefreshed                          // a TTL lease got a new generation
	EventSessionOpened                      // a session was created
	EventSessionEnded                       // a session was closed or expired (Reason)
	EventQueued                             // a claim entered a queue
	EventRevoking                           // a lease was marked revoked: TTL is its session's TTL, the grace
	EventAdopted                            // a TTL lease moved to Session from Previous, with a new Generation
	// EventMoved: a client session's claim moved to another request (a
	// re-attach); the event names its old route (Claim, Stream, Seq) and,
	// if it is held, its Token.
	EventMoved
	// EventProclaimed (protocol 5): an election's term (Name, Token) shows
	// Value from now on.
	EventProclaimed
)

// EndReason says why a lease or session ended.
type EndReason uint8

// End reasons.
const (
	ReasonReleased EndReason = iota + 1 // Release or Cancel
	ReasonExpired                       // ExpireLease
	ReasonLost                          // its session expired
	ReasonClosed                        // its session was closed
	ReasonRevoked                       // any end of a revoked lease
)

func (r EndReason) String() string {
	switch r {
	case ReasonReleased:
		return "released"
	case ReasonExpired:
		return "expired"
	case ReasonLost:
		return "lost"
	case ReasonClosed:
		return "closed"
	case ReasonRevoked:
		return "revoked"
	}
	return fmt.Sprintf("EndReason(%d)", uint8(r))
}

// Event is one change made by Apply. Fields not meaningful for a kind are
// zero.
type Event struct {
	Kind       EventKind
	Name       string
	Session    uint64 // the claim's or the session's ID (Revoking: the holder's session)
	Seq        uint64 // request seq of the claim
	Claim      uint64
	Token      uint64
	Generation uint64
	// TTL is the lease's TTL (Granted, Refreshed, Ended, Queued, Withdrawn,
	// Adopted) or the session's TTL (SessionOpened, SessionEnded, and
	// Revoking, where it is the grace).
	TTL      time.Duration
	Reason   EndReason // Ended, Withdrawn, SessionEnded
	Previous uint64    // Adopted: the session that held the lease before
	// Stream is the session whose request made (or last re-attached) a
	// client session's claim, 0 for a claim of a node's own session: a
	// grant or withdrawal reaches the waiter through it (DESIGN.md,
	// "Protocol 3").
	Stream uint64
	// Protocol 5 (DESIGN.md, "Protocol 5"): the lock's type, the claim's
	// mode (a read-write lock), its value (an election: Granted, Queued,
	// Proclaimed) and a permit's slot (a semaphore: Granted, Ended).
	Type  fsmpb.LockType
	Mode  fsmpb.Mode
	Value string
	Slot  int
}

type claim struct {
	id, session, seq uint64
	owner            string
	ttl              int64
	queued           int64  // leader stamp of the Acquire if it queued (level 2 and above)
	key              []byte // the lease key (level 3), nil if none
	stream           uint64 // level 3: see Event.Stream; seq is that session's
	mode             fsmpb.Mode
	value            string // level 5: an election candidate's value
}

// event is the Event of kind k about claim cl on name; the caller sets
// the rest.
func (cl claim) event(k EventKind, name string) Event {
	return Event{
		Kind: k, Name: name, Session: cl.session, Seq: cl.seq, Claim: cl.id, TTL: time.Duration(cl.ttl), Stream: cl.stream,
		Mode: cl.mode, Value: cl.value,
	}
}

type lease struct {
	claim      claim
	token, gen uint64
	refreshed  int64
	granted    int64 // leader stamp of the granting entry (level 2 and above)
	revoked    bool
	slot       int // level 5: a semaphore permit's slot
}

// lockState is a live name: held by at least one lease (a lock with
// neither holders nor claims is deleted). Below level 5 it is a mutex
// with one holder.
type lockState struct {
	typ     fsmpb.LockType
	limit   int     // a semaphore's limit, 0 for the other types
	holders []lease // in token order; values, not pointers: a held mutex costs one allocation, and the collector one pointer less
	queue   []claim
}

// find returns the position of the holder whose token is token, or -1.
func (l *lockState) find(token uint64) int {
	return slices.IndexFunc(l.holders, func(h lease) bool { return h.token == token })
}

// admits reports whether cl could be granted beside the current holders
// (DESIGN.md, "Protocol 5"): a mutex or an election has none, a semaphore
// fewer than its limit, a read-write lock none for a writer and no writer
// for a reader. FIFO is the caller's: only the head of the queue, or a
// claim that finds the queue empty, is asked.
func (l *lockState) admits(cl claim) bool {
	switch l.typ {
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		return len(l.holders) < l.limit
	case fsmpb.LockType_LOCK_TYPE_READ_WRITE:
		if cl.mode == fsmpb.Mode_MODE_WRITE {
			return len(l.holders) == 0
		}
		return !slices.ContainsFunc(l.holders, func(h lease) bool { return h.claim.mode == fsmpb.Mode_MODE_WRITE })
	default:
		return len(l.holders) == 0
	}
}

// freeSlot is the lowest slot no holder of a semaphore has: one pass
// over the holders, whose slots are distinct, so one of the first
// len(holders)+1 is free.
func (l *lockState) freeSlot() int {
	used := make([]bool, len(l.holders)+1)
	for _, h := range l.holders {
		if h.slot < len(used) {
			used[h.slot] = true
		}
	}
	return slices.Index(used, false)
}

type session struct {
	id         uint64
	ttl        int64
	node       string
	ackedBelow uint64
	results    map[uint64]*fsmpb.Result
	names      map[string]int // names with a lease or claim of this session
	secret     []byte         // level 3: a client session's secret; nil for a node's session
	owner      string         // level 3: a client session's owner
}

// State is the lock state machine. The zero value is not usable; call New.
type State struct {
	sessions map[uint64]*session
	locks    map[string]*lockState
	protocol int // the level the log has committed to (SetProtocol); 1 at first
	// orphans indexes the leases that outlived their session (a TTL lease
	// whose session expired or was closed): the names they hold, by that
	// session's ID. Derived, not snapshotted: Restore rebuilds it. It makes
	// OpenSession's look for what a re-opened ID still owns cost what that
	// ID owns instead of a scan of every lock (DESIGN.md, "Cost").
	// From level 5 a session may hold several leases of one name, so each
	// name counts its leases.
	orphans map[uint64]map[string]int
	// tokenFloor (level 4): every later grant, of any name, gets a token
	// above it; 0 or above the index after every entry that is neither
	// ignorable nor answered UNSUPPORTED, which change nothing (DESIGN.md,
	// "Protocol 4").
	tokenFloor uint64
}

// New returns an empty state at protocol level 1.
func New() *State {
	return &State{sessions: map[uint64]*session{}, locks: map[string]*lockState{}, protocol: 1, orphans: map[uint64]map[string]int{}}
}

// Protocol is the protocol level the state has committed to: 1 until a
// SetProtocol entry raised it.
func (s *State) Protocol() int { return s.protocol }

// applier carries one Apply call.
type applier struct {
	s      *State
	index  uint64
	stamp  int64
	events []Event
}

// Apply applies the command of log entry index. It returns the result and
// the events in the order they happened. The error is ErrUnknownCommand for
// a command without a known op that is not ignorable, or a SetProtocol
// above Protocol; the state is then unchanged.
func (s *State) Apply(index uint64, cmd *fsmpb.Command) (*fsmpb.Result, []Event, error) {
	a := &applier{s: s, index: index, stamp: cmd.GetStampUnixNano()}
	if _, raise := cmd.GetOp().(*fsmpb.Command_SetProtocol); !raise && Needs(cmd) > s.protocol {
		// A command type or field of a protocol the log has not committed
		// to (a leader that proposed it too early): nothing changes, not
		// even the request cache.
		return code(fsmpb.Code_CODE_UNSUPPORTED), nil, nil
	}
	var res *fsmpb.Result
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_OpenSession:
		res = a.openSession(op.OpenSession)
	case *fsmpb.Command_CloseSession:
		c := op.CloseSession
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result {
			if c.GetForSession() != 0 {
				if sess = a.clientSession(c.GetForSession(), c.GetSecret()); sess == nil {
					return code(fsmpb.Code_CODE_UNKNOWN_SESSION)
				}
			}
			a.endSession(sess, ReasonClosed)
			return ok()
		})
	case *fsmpb.Command_ExpireSession:
		sess := s.sessions[op.ExpireSession.GetSession()]
		if sess == nil {
			res = code(fsmpb.Code_CODE_UNKNOWN_SESSION)
		} else {
			a.endSession(sess, ReasonLost)
			res = ok()
		}
	case *fsmpb.Command_Acquire:
		c := op.Acquire
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result { return a.acquire(sess, c) })
	case *fsmpb.Command_Release:
		c := op.Release
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result {
			return a.release(sess, c.GetName(), c.GetToken(), c.GetKey())
		})
	case *fsmpb.Command_Refresh:
		c := op.Refresh
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result {
			return a.refresh(sess, c.GetName(), c.GetToken(), c.GetKey())
		})
	case *fsmpb.Command_Cancel:
		c := op.Cancel
		res = a.request(c.GetReq(), func(*session) *fsmpb.Result { return a.cancel(c.GetName(), c.GetClaim()) })
	case *fsmpb.Command_ExpireLease:
		res = a.expireLease(op.ExpireLease)
	case *fsmpb.Command_SetProtocol:
		level := op.SetProtocol.GetLevel()
		if level > uint32(Protocol) {
			return nil, nil, fmt.Errorf("%w at index %d: protocol %d, this build speaks %d", ErrUnknownCommand, index, level, Protocol)
		}
		s.protocol = max(s.protocol, int(level))
		res = ok()
	case *fsmpb.Command_Revoke:
		c := op.Revoke
		res = a.request(c.GetReq(), func(*session) *fsmpb.Result { return a.revoke(c.GetName(), c.GetToken()) })
	case *fsmpb.Command_EndRevoked:
		res = a.endRevoked(op.EndRevoked)
	case *fsmpb.Command_Adopt:
		c := op.Adopt
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result { return a.adopt(sess, c) })
	case *fsmpb.Command_FloorToken:
		c := op.FloorToken
		res = a.request(c.GetReq(), func(*session) *fsmpb.Result { return a.floorToken(c.GetName(), c.GetFloor()) })
	case *fsmpb.Command_Proclaim:
		c := op.Proclaim
		res = a.request(c.GetReq(), func(sess *session) *fsmpb.Result { return a.proclaim(sess, c) })
	default:
		if cmd.GetIgnorable() {
			return code(fsmpb.Code_CODE_UNSPECIFIED), nil, nil // a no-op: not even the token floor changes
		}
		return nil, nil, fmt.Errorf("%w at index %d", ErrUnknownCommand, index)
	}
	// A floor at or below this index is one no later grant needs.
	if s.tokenFloor <= index {
		s.tokenFloor = 0
	}
	return res, a.events, nil
}

// floorToken raises the store's token floor (DESIGN.md, "Protocol 4"):
// the tokens of every name, not only name's, which is validated but keeps
// no state. A floor at or below this entry's index is implied: every later
// grant's index is larger.
func (a *applier) floorToken(name string, floor uint64) *fsmpb.Result {
	if !validName(name) || floor > MaxTokenFloor {
		return code(fsmpb.Code_CODE_INVALID)
	}
	if floor > a.index {
		a.s.tokenFloor = max(a.s.tokenFloor, floor)
	}
	return ok()
}

// v2Stamp is the leader stamp to record at level 2 and above, else 0.
func (a *applier) v2Stamp() int64 {
	if a.s.protocol < 2 {
		return 0
	}
	return a.stamp
}

func ok() *fsmpb.Result               { return code(fsmpb.Code_CODE_OK) }
func code(c fsmpb.Code) *fsmpb.Result { return &fsmpb.Result{Code: c} }

// request runs fn once per (session, seq), caching its result. A client
// session is never a request's session: its ID is public, and only its
// secret, checked where a command names it as for_session, proves the
// caller's right to it (DESIGN.md, "Protocol 3").
func (a *applier) request(req *fsmpb.Request, fn func(*session) *fsmpb.Result) *fsmpb.Result {
	sess := a.s.sessions[req.GetSession()]
	if sess == nil || sess.secret != nil {
		return code(fsmpb.Code_CODE_UNKNOWN_SESSION)
	}
	seq := req.GetSeq()
	if seq < sess.ackedBelow {
		return code(fsmpb.Code_CODE_FORGOTTEN)
	}
	if r, found := sess.results[seq]; found {
		return r
	}
	if req.GetAckedBelow() > sess.ackedBelow {
		sess.ackedBelow = min(req.GetAckedBelow(), seq) // never forget the request in hand
		for q := range sess.results {
			if q < sess.ackedBelow {
				delete(sess.results, q)
			}
		}
	}
	res := fn(sess)
	if a.s.sessions[sess.id] != sess {
		return res // the command ended the session: nothing to cache in
	}
	sess.results[seq] = res
	if len(sess.results) > MaxCachedResults {
		lowest := seq
		for q := range sess.results {
			lowest = min(lowest, q)
		}
		delete(sess.results, lowest)
		sess.ackedBelow = max(sess.ackedBelow, lowest+1)
	}
	return res
}

func (a *applier) openSession(c *fsmpb.OpenSession) *fsmpb.Result {
	id := c.GetReq().GetSession()
	if id == 0 || c.GetTtlNs() <= 0 {
		return code(fsmpb.Code_CODE_INVALID)
	}
	if old := a.s.sessions[id]; old != nil {
		if !bytes.Equal(old.secret, c.GetSecret()) {
			return code(fsmpb.Code_CODE_HELD) // the ID is another session's: open under a new one
		}
		return ok()
	}
	if c.GetSecret() == nil && c.GetOwner() != "" || c.GetSecret() != nil && len(c.GetSecret()) != KeyLen || len(c.GetOwner()) > MaxOwnerLen {
		return code(fsmpb.Code_CODE_INVALID)
	}
	owned := a.s.orphans[id]
	if a.s.protocol >= 3 && len(owned) > 0 {
		// A lease outlived the session of this ID: a new session of the
		// ID would own it (and, with another secret, learn its key).
		return code(fsmpb.Code_CODE_HELD)
	}
	sess := &session{
		id: id, ttl: c.GetTtlNs(), node: c.GetNode(),
		results: map[uint64]*fsmpb.Result{}, names: map[string]int{},
		secret: bytes.Clone(c.GetSecret()), owner: c.GetOwner(),
	}
	// Below level 3 a TTL lease that outlived the expiry of its session
	// belongs to a new session of the same ID, exactly as Restore would
	// count it (the snapshot cannot tell the two sessions apart);
	// otherwise the names index undercounts and replicas that restored a
	// snapshot diverge from those that did not.
	for name, n := range owned {
		sess.names[name] += n
	}
	delete(a.s.orphans, id) // its leases have a session again
	a.s.sessions[id] = sess
	a.events = append(a.events, Event{Kind: EventSessionOpened, Session: id, TTL: time.Duration(c.GetTtlNs())})
	return ok()
}

// orphan records that a lease of name outlived its session id.
func (s *State) orphan(id uint64, name string) {
	if s.orphans[id] == nil {
		s.orphans[id] = map[string]int{}
	}
	s.orphans[id][name]++
}

// unorphan drops one lease of name from those that outlived session id.
func (s *State) unorphan(id uint64, name string) {
	if names := s.orphans[id]; names != nil {
		if names[name]--; names[name] <= 0 {
			delete(names, name)
		}
		if len(names) == 0 {
			delete(s.orphans, id)
		}
	}
}

// acquire runs an Acquire of req's session stream: for that session, or
// for the client session it names (DESIGN.md, "Protocol 3"). From level 5
// the name's type, limit and mode decide (DESIGN.md, "Protocol 5"): a
// name that lives as another type or limit answers MISMATCH, and a claim
// is granted at once only if the queue is empty and the holders admit it.
func (a *applier) acquire(stream *session, c *fsmpb.Acquire) *fsmpb.Result {
	key := c.GetKey()
	if !validName(c.GetName()) || len(c.GetOwner()) > MaxOwnerLen || !validLeaseTTL(c.GetTtlNs()) ||
		key != nil && len(key) != KeyLen || c.GetForSession() != 0 && key == nil || !validShape(c) {
		return code(fsmpb.Code_CODE_INVALID)
	}
	sess := stream
	cl := claim{
		id: a.index, session: sess.id, seq: c.GetReq().GetSeq(), owner: c.GetOwner(), ttl: c.GetTtlNs(), key: bytes.Clone(key),
		mode: c.GetMode(), value: c.GetValue(),
	}
	if c.GetForSession() != 0 {
		if sess = a.clientSession(c.GetForSession(), c.GetSecret()); sess == nil {
			return code(fsmpb.Code_CODE_UNKNOWN_SESSION)
		}
		cl.session, cl.stream = sess.id, stream.id
	}
	name := c.GetName()
	l := a.s.locks[name]
	if l != nil && (l.typ != c.GetType() || l.limit != int(c.GetLimit())) {
		return &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: l.typ, Limit: uint32(l.limit)}
	}
	if sess.secret != nil {
		if res := a.reattach(sess, stream, c); res != nil {
			return res
		}
	}
	if l == nil {
		l = &lockState{typ: c.GetType(), limit: int(c.GetLimit())}
		a.s.locks[name] = l
	}
	if len(l.queue) == 0 && l.admits(cl) {
		h := a.grant(name, l, cl)
		return &fsmpb.Result{Code: fsmpb.Code_CODE_GRANTED, Token: h.token, Claim: cl.id, Key: cl.key, Slot: uint32(h.slot)}
	}
	if c.GetTry() {
		return code(fsmpb.Code_CODE_HELD) // l has holders: an empty lock admits any claim
	}
	cl.queued = a.v2Stamp()
	l.queue = append(l.queue, cl)
	sess.names[name]++
	ev := cl.event(EventQueued, name)
	ev.Type = l.typ
	a.events = append(a.events, ev)
	return &fsmpb.Result{Code: fsmpb.Code_CODE_QUEUED, Claim: cl.id, Key: cl.key}
}

// validShape reports whether an Acquire's protocol-5 fields fit its type:
// a known type, a limit of 1 to MaxPermits on a semaphore and none
// elsewhere, a read or write mode on a read-write lock and none
// elsewhere, a value only on an election (Validate also checks it is
// UTF-8; Apply keeps to what it can check cheaply).
func validShape(c *fsmpb.Acquire) bool {
	limit, mode, value := c.GetLimit(), c.GetMode(), c.GetValue()
	switch c.GetType() {
	case fsmpb.LockType_LOCK_TYPE_MUTEX:
		return limit == 0 && mode == fsmpb.Mode_MODE_UNSPECIFIED && value == ""
	case fsmpb.LockType_LOCK_TYPE_SEMAPHORE:
		return limit >= 1 && limit <= MaxPermits && mode == fsmpb.Mode_MODE_UNSPECIFIED && value == ""
	case fsmpb.LockType_LOCK_TYPE_READ_WRITE:
		return limit == 0 && (mode == fsmpb.Mode_MODE_READ || mode == fsmpb.Mode_MODE_WRITE) && value == ""
	case fsmpb.LockType_LOCK_TYPE_ELECTION:
		return limit == 0 && mode == fsmpb.Mode_MODE_UNSPECIFIED && len(value) <= MaxOwnerLen
	}
	return false
}

// clientSession is the client session id if secret is its secret, else
// nil (a wrong secret and an unknown ID look the same).
func (a *applier) clientSession(id uint64, secret []byte) *session {
	sess := a.s.sessions[id]
	if sess == nil || sess.secret == nil || subtle.ConstantTimeCompare(sess.secret, secret) != 1 {
		return nil
	}
	return sess
}

// reattach answers an Acquire for client session sess on a name it has a
// claim on already (one claim per client session and name): that claim,
// held or queued, moves to stream's request and takes this entry's index
// as its ID, so that a late Cancel of the old waiter, naming the old ID,
// finds nothing; a Moved event tells the old stream. HELD if sess holds
// the name by a revoked lease; MISMATCH (with the claim's mode) if the
// claim has another mode than the one asked (a read lease asked as a
// write: no upgrade); nil if it has no claim on the name. The caller has
// checked the type and limit.
func (a *applier) reattach(sess, stream *session, c *fsmpb.Acquire) *fsmpb.Result {
	name := c.GetName()
	if sess.names[name] == 0 {
		return nil
	}
	l := a.s.locks[name]
	if i := slices.IndexFunc(l.holders, func(h lease) bool { return h.claim.session == sess.id }); i >= 0 {
		h := &l.holders[i]
		switch {
		case h.claim.mode != c.GetMode():
			return &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: l.typ, Limit: uint32(l.limit), Mode: h.claim.mode}
		case h.revoked:
			return code(fsmpb.Code_CODE_HELD) // by its own revoked lease: release that first
		}
		a.move(name, &h.claim, stream, c.GetReq().GetSeq(), h.token)
		return &fsmpb.Result{Code: fsmpb.Code_CODE_GRANTED, Token: h.token, Claim: h.claim.id, Key: h.claim.key, Slot: uint32(h.slot)}
	}
	for i := range l.queue {
		if cl := &l.queue[i]; cl.session == sess.id {
			if cl.mode != c.GetMode() {
				return &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: l.typ, Limit: uint32(l.limit), Mode: cl.mode}
			}
			a.move(name, cl, stream, c.GetReq().GetSeq(), 0)
			return &fsmpb.Result{Code: fsmpb.Code_CODE_QUEUED, Claim: cl.id, Key: cl.key}
		}
	}
	return nil
}

// move re-routes claim cl of name to (stream, seq) under this entry's
// index, and emits Moved with its old route (token: the lease's, if held).
func (a *applier) move(name string, cl *claim, stream *session, seq, token uint64) {
	ev := cl.event(EventMoved, name)
	ev.Token = token
	a.events = append(a.events, ev)
	cl.id, cl.stream, cl.seq = a.index, stream.id, seq
}

// grant makes cl a holder of l, which admits it. The caller has already
// removed cl from the queue and its session's names count (if it was
// queued). Its token is the index, or above the store's token floor if
// that is higher (DESIGN.md, "Protocol 4"); from level 5 every grant
// raises the floor to its token, so that the next grant of the same entry
// gets a larger one (DESIGN.md, "Protocol 5"). Its generation is the
// index; a semaphore permit takes the lowest free slot.
func (a *applier) grant(name string, l *lockState, cl claim) lease {
	token := max(a.index, a.s.tokenFloor+1)
	if token > a.index || a.s.protocol >= 5 {
		a.s.tokenFloor = token // the next grant's index may still be below it
	}
	h := lease{claim: cl, token: token, gen: a.index, refreshed: a.stamp, granted: a.v2Stamp()}
	if l.typ == fsmpb.LockType_LOCK_TYPE_SEMAPHORE {
		h.slot = l.freeSlot()
	}
	l.holders = append(l.holders, h) // tokens only grow: still in token order
	if sess := a.s.sessions[cl.session]; sess != nil {
		sess.names[name]++
	}
	ev := a.leaseEvent(EventGranted, name, l, &h)
	ev.Generation = a.index
	a.events = append(a.events, ev)
	return h
}

// leaseEvent is the Event of kind k about lease h of l.
func (a *applier) leaseEvent(k EventKind, name string, l *lockState, h *lease) Event {
	ev := h.claim.event(k, name)
	ev.Token, ev.Generation, ev.Type, ev.Slot = h.token, h.gen, l.typ, h.slot
	return ev
}

// end removes the holder at position i of name's lock l, hands the lock
// on (handOff), and deletes the lock if nothing is left. A revoked lease
// always ends with ReasonRevoked, whatever ended it.
func (a *applier) end(name string, l *lockState, i int, why EndReason) {
	h := l.holders[i]
	l.holders = slices.Delete(l.holders, i, i+1)
	if h.revoked {
		why = ReasonRevoked
	}
	a.forget(h.claim.session, name)
	ev := a.leaseEvent(EventEnded, name, l, &h)
	ev.Reason = why
	a.events = append(a.events, ev)
	a.handOff(name, l)
}

// handOff grants the head of l's queue while the holders admit it, after
// any change to l's holders or queue (DESIGN.md, "Protocol 5": one claim
// for a mutex or an election, up to the free permits of a semaphore, one
// writer or every reader up to the first writer of a read-write lock),
// then deletes the lock if nothing is left. Below level 5 a lock is a
// mutex whose queue waits behind a holder, so only the end of that holder
// grants anything, as it always did.
func (a *applier) handOff(name string, l *lockState) {
	for len(l.queue) > 0 && l.admits(l.queue[0]) {
		next := l.queue[0]
		l.queue = slices.Delete(l.queue, 0, 1)
		a.forget(next.session, name)
		a.grant(name, l, next)
	}
	if len(l.holders) == 0 && len(l.queue) == 0 {
		delete(a.s.locks, name)
	}
}

// forget drops one reference of session id to name: a claim or lease of
// id on name has gone. If id is gone itself, that was a lease that
// outlived it.
func (a *applier) forget(id uint64, name string) {
	sess := a.s.sessions[id]
	if sess == nil {
		a.s.unorphan(id, name)
		return
	}
	if sess.names[name]--; sess.names[name] <= 0 {
		delete(sess.names, name)
	}
}

// mayUse reports whether sess may release or refresh lease h by its
// token. Below level 2 anyone naming the token may (tokens are
// capabilities). From level 2, only h's session while it lives: Adopt
// keeps the token, so the previous holder of an adopted lease names it
// too, and its late Release (of a lease it saw end) must not end the
// adopter's (DESIGN.md, "Protocol 2"). A lease whose session is gone stays
// anyone's to release or refresh by token, except, from level 3, a keyed
// lease: its key is its only capability (DESIGN.md, "Protocol 3").
func (a *applier) mayUse(h *lease, sess *session) bool {
	if a.s.protocol < 2 || h.claim.session == sess.id {
		return true
	}
	return a.s.sessions[h.claim.session] == nil && (a.s.protocol < 3 || h.claim.key == nil)
}

// named finds the lease of name that sess may act on by token and key:
// with a key, the holder carrying that key (and token, unless 0), from
// any session; without, the holder of token, if mayUse lets sess. It
// returns the lock and the holder's position, or nil and -1.
func (a *applier) named(sess *session, name string, token uint64, key []byte) (*lockState, int) {
	l := a.s.locks[name]
	if l == nil {
		return nil, -1
	}
	var i int
	if key != nil {
		i = slices.IndexFunc(l.holders, func(h lease) bool {
			return h.claim.key != nil && subtle.ConstantTimeCompare(h.claim.key, key) == 1 && (token == 0 || h.token == token)
		})
	} else if i = l.find(token); i >= 0 && !a.mayUse(&l.holders[i], sess) {
		i = -1
	}
	if i < 0 {
		return nil, -1
	}
	return l, i
}

func (a *applier) release(sess *session, name string, token uint64, key []byte) *fsmpb.Result {
	l, i := a.named(sess, name, token, key)
	if l == nil {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	t := l.holders[i].token
	a.end(name, l, i, ReasonReleased)
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: tokenIf(key, t)}
}

// tokenIf is token for a request made by key (its caller may not know the
// token), 0 otherwise (the answer protocol 2 gave).
func tokenIf(key []byte, token uint64) uint64 {
	if key == nil {
		return 0
	}
	return token
}

func (a *applier) refresh(sess *session, name string, token uint64, key []byte) *fsmpb.Result {
	l, i := a.named(sess, name, token, key)
	if l == nil || l.holders[i].revoked {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	h := &l.holders[i]
	if h.claim.ttl > 0 {
		h.gen, h.refreshed = a.index, a.stamp
		a.events = append(a.events, a.leaseEvent(EventRefreshed, name, l, h))
	}
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: h.token, TtlNs: ttlIf(key, h.claim.ttl)}
}

// ttlIf is the lease's TTL for a request made by key, 0 otherwise.
func ttlIf(key []byte, ttl int64) int64 {
	if key == nil {
		return 0
	}
	return ttl
}

// proclaim (protocol 5) sets the value of the election term (name,
// token), which sess may act on as on a Refresh (named): MISMATCH if the
// name is not an election, NOT_HELD if the term has ended or is revoked.
func (a *applier) proclaim(sess *session, c *fsmpb.Proclaim) *fsmpb.Result {
	name, key := c.GetName(), c.GetKey()
	if !validName(name) || len(c.GetValue()) > MaxOwnerLen || key != nil && len(key) != KeyLen {
		return code(fsmpb.Code_CODE_INVALID)
	}
	if l := a.s.locks[name]; l != nil && l.typ != fsmpb.LockType_LOCK_TYPE_ELECTION {
		return &fsmpb.Result{Code: fsmpb.Code_CODE_MISMATCH, Type: l.typ, Limit: uint32(l.limit)}
	}
	l, i := a.named(sess, name, c.GetToken(), key)
	if l == nil || l.holders[i].revoked {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	h := &l.holders[i]
	h.claim.value = c.GetValue()
	a.events = append(a.events, a.leaseEvent(EventProclaimed, name, l, h))
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: h.token}
}

// cancel withdraws claim id of name if it is queued, or ends its lease if
// it was granted.
func (a *applier) cancel(name string, id uint64) *fsmpb.Result {
	l := a.s.locks[name]
	if l == nil {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	if i := slices.IndexFunc(l.holders, func(h lease) bool { return h.claim.id == id }); i >= 0 {
		token := l.holders[i].token
		a.end(name, l, i, ReasonReleased)
		return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: token, Claim: id}
	}
	for i, cl := range l.queue {
		if cl.id == id {
			a.withdraw(name, l, i, ReasonReleased)
			return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Claim: id}
		}
	}
	return code(fsmpb.Code_CODE_NOT_HELD)
}

// withdraw takes the claim at position i out of l's queue, then hands the
// lock on: from level 5 the claims behind a withdrawn head may be
// admissible (readers behind a writer).
func (a *applier) withdraw(name string, l *lockState, i int, why EndReason) {
	a.takeOut(name, l, i, why)
	a.handOff(name, l)
}

// takeOut removes the claim at position i of l's queue, without the
// hand-off that withdraw makes after it.
func (a *applier) takeOut(name string, l *lockState, i int, why EndReason) {
	cl := l.queue[i]
	l.queue = slices.Delete(l.queue, i, i+1)
	a.forget(cl.session, name)
	ev := cl.event(EventWithdrawn, name)
	ev.Reason, ev.Type = why, l.typ
	a.events = append(a.events, ev)
}

func (a *applier) expireLease(c *fsmpb.ExpireLease) *fsmpb.Result {
	l := a.s.locks[c.GetName()]
	if l == nil {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	i := l.find(c.GetToken())
	if i < 0 || l.holders[i].gen != c.GetGeneration() || l.holders[i].claim.ttl == 0 {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	a.end(c.GetName(), l, i, ReasonExpired)
	return ok()
}

// endSession withdraws the session's queued claims, ends its leases (all of
// them when closed; session leases and revoked leases when lost) and
// deletes it. Names are visited in sorted order, and a name's leases in
// token order, so that grants and events are deterministic.
func (a *applier) endSession(sess *session, why EndReason) {
	names := slices.Sorted(maps.Keys(sess.names))
	for _, name := range names {
		l := a.s.locks[name]
		// Take every queued claim of the session out before anything is
		// handed on, so that neither a withdrawal (from level 5 a claim
		// behind a withdrawn one may be admissible) nor a lease's end can
		// hand the lock to a claim of this same session.
		for i := 0; i < len(l.queue); {
			if l.queue[i].session == sess.id {
				a.takeOut(name, l, i, why)
				continue
			}
			i++
		}
		for i := 0; i < len(l.holders); {
			if h := &l.holders[i]; h.claim.session == sess.id && a.endsWith(h, sess, why) {
				a.end(name, l, i, why)
				continue
			}
			i++
		}
		a.handOff(name, l) // after withdrawals alone; a no-op after an end, which handed on
	}
	for _, name := range names {
		if l := a.s.locks[name]; l != nil {
			for _, h := range l.holders {
				if h.claim.session == sess.id {
					a.s.orphan(sess.id, name) // a lease that outlives its session
				}
			}
		}
	}
	delete(a.s.sessions, sess.id)
	a.events = append(a.events, Event{Kind: EventSessionEnded, Session: sess.id, TTL: time.Duration(sess.ttl), Reason: why})
}

// endsWith reports whether lease h of session sess ends as sess ends for
// why: a session lease and a revoked lease always; a TTL lease when its
// session is closed, except, from level 3, a keyed TTL lease of a node's
// session, which its caller holds by key (DESIGN.md, "Protocol 3").
func (a *applier) endsWith(h *lease, sess *session, why EndReason) bool {
	switch {
	case h.claim.ttl == 0 || h.revoked:
		return true
	case why != ReasonClosed:
		return false
	}
	return a.s.protocol < 3 || h.claim.key == nil || sess.secret != nil
}

// holder returns the lock of name and the position of its holder with
// token, or nil and -1.
func (a *applier) holder(name string, token uint64) (*lockState, int) {
	l := a.s.locks[name]
	if l == nil {
		return nil, -1
	}
	i := l.find(token)
	if i < 0 {
		return nil, -1
	}
	return l, i
}

// revoke marks the lease (name, token) revoked, or ends it at once if its
// session is gone (nobody is left to hear of it, so no grace is owed).
func (a *applier) revoke(name string, token uint64) *fsmpb.Result {
	l, i := a.holder(name, token)
	if l == nil {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	h := &l.holders[i]
	sess := a.s.sessions[h.claim.session]
	switch {
	case h.revoked:
	case sess == nil:
		a.end(name, l, i, ReasonRevoked)
	default:
		h.revoked = true
		ev := a.leaseEvent(EventRevoking, name, l, h)
		ev.TTL = time.Duration(sess.ttl) // the grace
		a.events = append(a.events, ev)
	}
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: token}
}

// endRevoked ends the revoked lease (name, token) once its grace is over.
func (a *applier) endRevoked(c *fsmpb.EndRevoked) *fsmpb.Result {
	l, i := a.holder(c.GetName(), c.GetToken())
	if l == nil || !l.holders[i].revoked {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	a.end(c.GetName(), l, i, ReasonRevoked)
	return ok()
}

// adopt moves the TTL lease (name, token) to sess and refreshes it. The
// claim takes the adopting request's seq, so that (session, seq) still
// names the call that holds it, and from level 3 the Adopt's index as its
// ID, so that a late Cancel of the previous holder's waiter finds nothing
// (DESIGN.md, "Protocol 3"); below level 3 it keeps its ID.
func (a *applier) adopt(sess *session, c *fsmpb.Adopt) *fsmpb.Result {
	name := c.GetName()
	l, i := a.holder(name, c.GetToken())
	if l == nil || l.holders[i].revoked || l.holders[i].claim.ttl == 0 {
		return code(fsmpb.Code_CODE_NOT_HELD)
	}
	if c.GetKey() != nil && len(c.GetKey()) != KeyLen {
		return code(fsmpb.Code_CODE_INVALID)
	}
	h := &l.holders[i]
	prev := h.claim.session
	a.forget(prev, name)
	sess.names[name]++
	h.claim.session, h.claim.seq, h.claim.stream = sess.id, c.GetReq().GetSeq(), 0
	if a.s.protocol >= 3 {
		h.claim.id = a.index
	}
	h.claim.key = bytes.Clone(c.GetKey()) // the previous holder's key stops working (DESIGN.md, "Protocol 3")
	h.gen, h.refreshed = a.index, a.stamp
	ev := a.leaseEvent(EventAdopted, name, l, h)
	ev.Previous = prev
	a.events = append(a.events, ev)
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: h.token, Claim: h.claim.id, Generation: h.gen, TtlNs: h.claim.ttl}
}
