package fsm

import (
	"crypto/subtle"
	"maps"
	"slices"
	"strings"
	"time"
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
}

// Lock reports the state of name; Held is false for an unknown name.
func (s *State) Lock(name string) LockInfo {
	l := s.locks[name]
	if l == nil {
		return LockInfo{Name: name}
	}
	info := LockInfo{Name: name, Waiters: len(l.queue)}
	if h := l.holder; h != nil {
		info.Held = true
		info.Token, info.Generation, info.Claim = h.token, h.gen, h.claim.id
		info.Session, info.Owner, info.TTL = h.claim.session, h.claim.owner, time.Duration(h.claim.ttl)
		info.RefreshedUnixNano = h.refreshed
		info.Revoked, info.GrantedUnixNano = h.revoked, h.granted
		if sess := s.sessions[h.claim.session]; sess != nil {
			info.Node = sess.node
		}
	}
	return info
}

// ClaimInfo is one claim waiting in a queue.
type ClaimInfo struct {
	Claim          uint64
	Session        uint64
	Node           string // node of the claim's session
	Owner          string
	TTL            time.Duration // 0: session lease
	QueuedUnixNano int64         // leader stamp of its Acquire; 0 if queued below protocol level 2
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
			TTL: time.Duration(cl.ttl), QueuedUnixNano: cl.queued,
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
		if l.holder != nil && strings.HasPrefix(name, prefix) && name > after {
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

// Revoked lists the revoked leases, sorted by name: a new leader arms
// their grace timers from it.
func (s *State) Revoked() []RevokedLease {
	var out []RevokedLease
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		h := s.locks[name].holder
		if h == nil || !h.revoked {
			continue
		}
		rl := RevokedLease{Name: name, Token: h.token, Session: h.claim.session}
		if sess := s.sessions[h.claim.session]; sess != nil {
			rl.Grace = time.Duration(sess.ttl)
		}
		out = append(out, rl)
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
	for _, cl := range append([]claim{l.holder.claim}, l.queue...) {
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

// TTLLeases lists every held TTL lease, sorted by name.
func (s *State) TTLLeases() []LockInfo {
	var out []LockInfo
	for _, name := range slices.Sorted(maps.Keys(s.locks)) {
		if h := s.locks[name].holder; h != nil && h.claim.ttl > 0 {
			out = append(out, s.Lock(name))
		}
	}
	return out
}

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
