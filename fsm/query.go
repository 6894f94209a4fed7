package fsm

import (
	"crypto/subtle"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// LockInfo is the state of one name.
type LockInfo struct {
	Name              string
	Held              bool
	Token             uint64
	Generation        uint64
	Claim             uint64
	Session           uint64
	Owner             string
	TTL               time.Duration // 0: session lease
	RefreshedUnixNano int64         // leader stamp of the grant or last refresh
	Waiters           int
	Node              string // node of the holder's session; "" if the session is gone
	Revoked           bool   // revoked: it ends when its holder lets go or its grace is over
	GrantedUnixNano   int64  // leader stamp of the grant; 0 if granted below protocol level 2
	// Protocol 5: the type and a semaphore's limit; the first holder's
	// mode, slot and value; and, for every type but a mutex, Holders: each
	// held lease in token order (the top-level fields describe the first).
	Type    fsmpb.LockType
	Limit   int
	Mode    fsmpb.Mode
	Slot    int
	Value   string
	Holders []HolderInfo
}

// HolderInfo is one held lease of a name (protocol 5).
type HolderInfo struct {
	Token             uint64
	Generation        uint64
	Claim             uint64
	Session           uint64
	Owner             string
	TTL               time.Duration
	RefreshedUnixNano int64
	Node              string
	Revoked           bool
	GrantedUnixNano   int64
	Mode              fsmpb.Mode
	Slot              int
	Value             string
}

// Lock reports the state of name; Held is false for an unknown name.
func (s *State) Lock(name string) LockInfo {
	l := s.locks[name]
	if l == nil {
		return LockInfo{Name: name}
	}
	info := LockInfo{Name: name, Waiters: len(l.queue), Type: l.typ, Limit: l.limit}
	if len(l.holders) == 0 {
		return info
	}
	info.Held = true
	s.describe(&info, &l.holders[0])
	if l.typ != fsmpb.LockType_LOCK_TYPE_MUTEX {
		info.Holders = make([]HolderInfo, len(l.holders))
		for i := range l.holders {
			s.holderInfo(&info.Holders[i], &l.holders[i])
		}
	}
	return info
}

// describe fills info's top-level fields from lease h.
func (s *State) describe(info *LockInfo, h *lease) {
	var hi HolderInfo
	s.holderInfo(&hi, h)
	info.Token, info.Generation, info.Claim, info.Session = hi.Token, hi.Generation, hi.Claim, hi.Session
	info.Owner, info.TTL, info.RefreshedUnixNano, info.Node = hi.Owner, hi.TTL, hi.RefreshedUnixNano, hi.Node
	info.Revoked, info.GrantedUnixNano, info.Mode, info.Slot, info.Value = hi.Revoked, hi.GrantedUnixNano, hi.Mode, hi.Slot, hi.Value
}

// holderInfo fills hi from lease h.
func (s *State) holderInfo(hi *HolderInfo, h *lease) {
	*hi = HolderInfo{
		Token: h.token, Generation: h.gen, Claim: h.claim.id, Session: h.claim.session, Owner: h.claim.owner,
		TTL: time.Duration(h.claim.ttl), RefreshedUnixNano: h.refreshed, Revoked: h.revoked, GrantedUnixNano: h.granted,
		Mode: h.claim.mode, Slot: h.slot, Value: h.claim.value,
	}
	if sess := s.sessions[h.claim.session]; sess != nil {
		hi.Node = sess.node
	}
}

// Leases is every held lease of the name in token order: Holders, or for
// a mutex its one lease, from the top-level fields; nil when not held.
func (i LockInfo) Leases() []HolderInfo {
	switch {
	case !i.Held:
		return nil
	case i.Holders != nil:
		return i.Holders
	}
	return []HolderInfo{{
		Token: i.Token, Generation: i.Generation, Claim: i.Claim, Session: i.Session, Owner: i.Owner,
		TTL: i.TTL, RefreshedUnixNano: i.RefreshedUnixNano, Node: i.Node, Revoked: i.Revoked,
		GrantedUnixNano: i.GrantedUnixNano, Mode: i.Mode, Slot: i.Slot, Value: i.Value,
	}}
}

// Lease is the held lease of the name with token, if there is one.
func (i LockInfo) Lease(token uint64) (HolderInfo, bool) {
	for _, h := range i.Leases() {
		if h.Token == token {
			return h, true
		}
	}
	return HolderInfo{}, false
}

// LeaseOfClaim is the held lease that claim became, if there is one.
func (i LockInfo) LeaseOfClaim(claim uint64) (HolderInfo, bool) {
	for _, h := range i.Leases() {
		if h.Claim == claim {
			return h, true
		}
	}
	return HolderInfo{}, false
}

// ClaimInfo is one claim waiting in a queue.
type ClaimInfo struct {
	Claim          uint64
	Session        uint64
	Node           string // node of the claim's session
	Owner          string
	TTL            time.Duration // 0: session lease
	QueuedUnixNano int64         // leader stamp of its Acquire; 0 if queued below protocol level 2
	Mode           fsmpb.Mode    // protocol 5: a read-write lock claim's mode
	Value          string        // protocol 5: an election candidate's value
}

// Queue lists the first limit claims waiting for name, in queue order
// (all of them if limit <= 0).
func (s *State) Queue(name string, limit int) []ClaimInfo {
	l := s.locks[name]
	if l == nil {
		return nil
	}
	q := l.queue
	if limit > 0 && len(q) > limit {
		q = q[:limit]
	}
	out := make([]ClaimInfo, 0, len(q))
	for _, cl := range q {
		ci := ClaimInfo{
			Claim: cl.id, Session: cl.session, Owner: cl.owner,
			TTL: time.Duration(cl.ttl), QueuedUnixNano: cl.queued, Mode: cl.mode, Value: cl.value,
		}
		if sess := s.sessions[cl.session]; sess != nil {
			ci.Node = sess.node
		}
		out = append(out, ci)
	}
	return out
}

// List reports the held names that start with prefix and sort strictly
// after after, in byte order, at most limit of them (all if limit <= 0).
// It sorts the matching names on every call: O(names) per page.
func (s *State) List(prefix, after string, limit int) []LockInfo {
	var names []string
	for name, l := range s.locks {
		if len(l.holders) > 0 && strings.HasPrefix(name, prefix) && name > after {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	out := make([]LockInfo, 0, len(names))
	for _, name := range names {
		out = append(out, s.Lock(name))
	}
	return out
}

// RevokedLease is a revoked lease waiting for its holder to let go.
type RevokedLease struct {
	Name    string
	Token   uint64
	Session uint64
	Grace   time.Duration // the holder session's TTL; 0 if the session is gone
}

// Revoked lists the revoked leases, sorted by name and token: a new
// leader arms their grace timers from it.
func (s *State) Revoked() []RevokedLease {
	var out []RevokedLease
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		for _, h := range s.locks[name].holders {
			if !h.revoked {
				continue
			}
			rl := RevokedLease{Name: name, Token: h.token, Session: h.claim.session}
			if sess := s.sessions[h.claim.session]; sess != nil {
				rl.Grace = time.Duration(sess.ttl)
			}
			out = append(out, rl)
		}
	}
	return out
}

// SessionInfo describes one session.
type SessionInfo struct {
	ID   uint64
	TTL  time.Duration
	Node string
	// Client: a client session (protocol 3), labelled Owner.
	Client bool
	Owner  string
}

// Session describes session id; false if there is none.
func (s *State) Session(id uint64) (SessionInfo, bool) {
	sess := s.sessions[id]
	if sess == nil {
		return SessionInfo{}, false
	}
	return sess.info(), true
}

// Sessions lists every session, sorted by ID.
func (s *State) Sessions() []SessionInfo {
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, id := range slices.Sorted(maps.Keys(s.sessions)) {
		out = append(out, s.sessions[id].info())
	}
	return out
}

func (sess *session) info() SessionInfo {
	return SessionInfo{ID: sess.id, TTL: time.Duration(sess.ttl), Node: sess.node, Client: sess.secret != nil, Owner: sess.owner}
}

// SessionTTL is the TTL of session id, 0 if there is no such session.
func (s *State) SessionTTL(id uint64) time.Duration {
	if sess := s.sessions[id]; sess != nil {
		return time.Duration(sess.ttl)
	}
	return 0
}

// HasSession reports whether session id exists.
func (s *State) HasSession(id uint64) bool { return s.sessions[id] != nil }

// Renewable reports whether a keep-alive carrying secret may renew
// session id: a node's session with no secret, a client session with its
// own (compared in constant time). The leader checks it before it resets
// a session's timer (node/DESIGN.md, "Client sessions and lease keys").
func (s *State) Renewable(id uint64, secret []byte) bool {
	sess := s.sessions[id]
	switch {
	case sess == nil:
		return false
	case sess.secret == nil:
		return secret == nil
	}
	return subtle.ConstantTimeCompare(sess.secret, secret) == 1
}

// RoutedClaim is the ID of the claim on name, held or queued, that the
// request (session, seq) made or last re-attached, or 0: a client
// session's claim by its stream, any other by its own session. It is what
// a node looks for when the answer to an Acquire was lost with the
// session it was made in.
func (s *State) RoutedClaim(name string, session, seq uint64) uint64 {
	l := s.locks[name]
	if l == nil || session == 0 {
		return 0
	}
	claims := make([]claim, 0, len(l.holders)+len(l.queue))
	for _, h := range l.holders {
		claims = append(claims, h.claim)
	}
	for _, cl := range append(claims, l.queue...) {
		route := cl.stream
		if route == 0 {
			route = cl.session
		}
		if route == session && cl.seq == seq {
			return cl.id
		}
	}
	return 0
}

// TTLLeases lists every held TTL lease, sorted by name and token: the
// top-level fields of each entry describe that lease.
func (s *State) TTLLeases() []LockInfo {
	var out []LockInfo
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		l := s.locks[name]
		var first LockInfo // built once per name: its Holders list is shared
		for i := range l.holders {
			h := &l.holders[i]
			if h.claim.ttl == 0 {
				continue
			}
			if first.Name == "" {
				first = s.Lock(name)
			}
			info := first
			s.describe(&info, h)
			out = append(out, info)
		}
	}
	return out
}

// TokenFloor is the store's token floor (DESIGN.md, "Protocol 4"): every
// later grant gets a token above it. It is 0, or above the index of the
// last entry applied; from level 5 it is at least every token granted
// above its entry's index.
func (s *State) TokenFloor() uint64 { return s.tokenFloor }

// LockCount is the number of names held or waited for.
func (s *State) LockCount() int { return len(s.locks) }

// SessionCount is the number of open sessions (len(Sessions()) without
// building the list: a metrics scrape asks it).
func (s *State) SessionCount() int { return len(s.sessions) }

// Queued reports whether claim waits in the queue of name.
func (s *State) Queued(name string, claim uint64) bool {
	l := s.locks[name]
	if l == nil {
		return false
	}
	for _, cl := range l.queue {
		if cl.id == claim {
			return true
		}
	}
	return false
}
