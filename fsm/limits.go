package fsm

import (
	"errors"
	"fmt"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// ErrLimit: a command that would grow the state past one of its Limits.
var ErrLimit = errors.New("fsm: limit reached")

// Limits caps how far proposals may grow the state. They are checked at
// the door (Admit), never in Apply (node/DESIGN.md, "Limits"). A zero field
// is no cap.
type Limits struct {
	Sessions        int // sessions in the state
	SessionsPerNode int // sessions opened from one node ID
	Names           int // names held or waited for
	NamesPerSession int // names one session holds or waits for
	WaitersPerName  int // claims queued on one name
}

// Admit reports whether cmd may be proposed to s without growing it past
// lim: nil, or an error wrapping ErrLimit. Commands that cannot grow the
// state, a repeat of a request s has cached, a request of an unknown
// session (Apply answers it UNKNOWN_SESSION) and an Acquire of a name that
// lives as another type or limit (Apply answers it MISMATCH) are always
// admitted.
func (s *State) Admit(cmd *fsmpb.Command, lim Limits) error {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_OpenSession:
		return s.admitSession(op.OpenSession, lim)
	case *fsmpb.Command_Acquire:
		return s.admitAcquire(op.Acquire, lim)
	default:
		return nil
	}
}

func (s *State) admitSession(c *fsmpb.OpenSession, lim Limits) error {
	if s.sessions[c.GetReq().GetSession()] != nil {
		return nil // opening it again changes nothing
	}
	if full(len(s.sessions), lim.Sessions) {
		return limitErr("sessions", lim.Sessions)
	}
	if lim.SessionsPerNode > 0 {
		n := 0
		for _, sess := range s.sessions {
			if sess.node == c.GetNode() {
				n++
			}
		}
		if full(n, lim.SessionsPerNode) {
			return limitErr(fmt.Sprintf("sessions of node %q", c.GetNode()), lim.SessionsPerNode)
		}
	}
	return nil
}

func (s *State) admitAcquire(c *fsmpb.Acquire, lim Limits) error {
	sess := s.sessions[c.GetReq().GetSession()]
	if sess == nil || sess.repeats(c.GetReq()) {
		return nil
	}
	if c.GetForSession() != 0 {
		// The claim is the client session's: its names count (protocol 3).
		if sess = s.sessions[c.GetForSession()]; sess == nil {
			return nil // Apply answers UNKNOWN_SESSION
		}
		if sess.secret != nil && sess.names[c.GetName()] > 0 {
			return nil // a re-attach: the claim exists, nothing grows
		}
	}
	name := c.GetName()
	l := s.locks[name]
	switch {
	case l != nil && (l.typ != c.GetType() || l.limit != int(c.GetLimit())):
		return nil // Apply answers MISMATCH: nothing grows
	case l == nil && full(len(s.locks), lim.Names):
		return limitErr("names", lim.Names)
	case sess.names[name] == 0 && full(len(sess.names), lim.NamesPerSession):
		return limitErr("names of one session", lim.NamesPerSession)
	case l != nil && len(l.holders) > 0 && !c.GetTry() && full(waiting(l), lim.WaitersPerName):
		return limitErr(fmt.Sprintf("waiters on %q", name), lim.WaitersPerName)
	}
	return nil
}

// waiting is what WaitersPerName counts on l: its queue, and the read
// leases of a read-write lock beyond the first, the one kind of holder
// with no bound of its own (DESIGN.md, "Protocol 5"; a semaphore's
// holders are bounded by its limit).
func waiting(l *lockState) int {
	n := len(l.queue)
	if l.typ == fsmpb.LockType_LOCK_TYPE_READ_WRITE && len(l.holders) > 1 {
		n += len(l.holders) - 1
	}
	return n
}

// repeats reports whether req is one the session has answered already:
// Apply gives its cached (or FORGOTTEN) answer and changes nothing.
func (sess *session) repeats(req *fsmpb.Request) bool {
	_, cached := sess.results[req.GetSeq()]
	return cached || req.GetSeq() < sess.ackedBelow
}

// full reports whether n has reached a cap (0: none).
func full(n, limit int) bool { return limit > 0 && n >= limit }

func limitErr(what string, limit int) error {
	return fmt.Errorf("%w: %s at most %d", ErrLimit, what, limit)
}
