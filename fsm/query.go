package fsm

import (
	"maps"
	"slices"
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
	}
	return info
}

// SessionInfo describes one session.
type SessionInfo struct {
	ID   uint64
	TTL  time.Duration
	Node string
}

// Sessions lists every session, sorted by ID.
func (s *State) Sessions() []SessionInfo {
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, id := range slices.Sorted(maps.Keys(s.sessions)) {
		sess := s.sessions[id]
		out = append(out, SessionInfo{ID: id, TTL: time.Duration(sess.ttl), Node: sess.node})
	}
	return out
}

// HasSession reports whether session id exists.
func (s *State) HasSession(id uint64) bool { return s.sessions[id] != nil }

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
