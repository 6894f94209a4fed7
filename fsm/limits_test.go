package fsm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

func TestState_Admit(t *testing.T) {
	// Sessions 1 and 2 on n1, 3 on n2. Session 1 holds a and waits on b;
	// session 2 holds b; session 3 waits on a.
	s := mustApply(t,
		cmdOpen(1, time.Second, "n1"),
		cmdOpen(2, time.Second, "n1"),
		cmdOpen(3, time.Second, "n2"),
		cmdAcquire(1, 1, "a"),
		cmdAcquire(2, 1, "b"),
		cmdAcquire(1, 2, "b"),
		cmdAcquire(3, 1, "a"),
	)
	for _, c := range []struct {
		what  string
		cmd   *fsmpb.Command
		lim   Limits
		limit bool
	}{
		{"no limits", cmdAcquire(1, 3, "c"), Limits{}, false},
		{"sessions full", cmdOpen(4, time.Second, "n3"), Limits{Sessions: 3}, true},
		{"sessions room", cmdOpen(4, time.Second, "n3"), Limits{Sessions: 4}, false},
		{"an open session opened again", cmdOpen(1, time.Second, "n1"), Limits{Sessions: 3, SessionsPerNode: 1}, false},
		{"sessions of n1 full", cmdOpen(4, time.Second, "n1"), Limits{SessionsPerNode: 2}, true},
		{"sessions of n2 room", cmdOpen(4, time.Second, "n2"), Limits{SessionsPerNode: 2}, false},
		{"names full, new name", cmdAcquire(3, 2, "c"), Limits{Names: 2}, true},
		{"names full, known name", cmdAcquire(3, 2, "b"), Limits{Names: 2}, false},
		{"names of session 1 full, new name", cmdAcquire(1, 3, "c"), Limits{NamesPerSession: 2}, true},
		{"names of session 1 full, a name it waits on", cmdAcquire(1, 3, "b"), Limits{NamesPerSession: 2}, false},
		{"names of session 3 room", cmdAcquire(3, 2, "c"), Limits{NamesPerSession: 2}, false},
		{"waiters on a full", cmdAcquire(2, 2, "a"), Limits{WaitersPerName: 1}, true},
		{"waiters on a full, try", cmdAcquire(2, 2, "a", withTry()), Limits{WaitersPerName: 1}, false},
		{"waiters on a room", cmdAcquire(2, 2, "a"), Limits{WaitersPerName: 2}, false},
		{"waiters on a full, asked as another type", cmdAcquire(2, 2, "a", withSemaphore(2)), Limits{WaitersPerName: 1}, false},
		{"names of session 3 full, a name of another type", cmdAcquire(3, 2, "b", withSemaphore(2)), Limits{NamesPerSession: 1}, false},
		{"a repeat of a cached request", cmdAcquire(3, 1, "a"), Limits{WaitersPerName: 1, Names: 1, NamesPerSession: 1}, false},
		{"an unknown session", cmdAcquire(9, 1, "z"), Limits{Names: 1}, false},
		{"release never refused", cmdRelease(1, 3, "a", 4), Limits{Sessions: 1, Names: 1, NamesPerSession: 1, WaitersPerName: 1}, false},
		{"close never refused", cmdClose(1, 3), Limits{Sessions: 1, Names: 1, NamesPerSession: 1, WaitersPerName: 1}, false},
	} {
		err := s.Admit(c.cmd, c.lim)
		if c.limit {
			assert.ErrorIs(t, err, ErrLimit, c.what)
		} else {
			assert.NoError(t, err, c.what)
		}
	}
}

// TestState_AdmitClientSession: a claim for a client session counts
// against that session's names, not its stream's (protocol 3).
func TestState_AdmitClientSession(t *testing.T) {
	s := mustApply(t, opens3(2,
		cmdOpenClient(c1, k(1), ""),                       // 4
		cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))), // 5: c1 holds a
		cmdAcquire(s1, 2, "b"),                            // 6: s1 holds b
	)...)
	lim := Limits{NamesPerSession: 1}
	assert.ErrorIs(t, s.Admit(cmdAcquire(s2, 1, "c", forClient(c1, k(1), k(3))), lim), ErrLimit, "c1 has its one name")
	assert.NoError(t, s.Admit(cmdAcquire(s2, 1, "a", forClient(c1, k(1), k(3))), lim), "a re-attach is no new name")
	assert.NoError(t, s.Admit(cmdAcquire(s2, 1, "c"), lim), "s2 has none")
	assert.ErrorIs(t, s.Admit(cmdAcquire(s1, 3, "c"), lim), ErrLimit, "s1 has b")
	assert.NoError(t, s.Admit(cmdAcquire(s1, 3, "c", forClient(c2, k(2), k(3))), lim), "an unknown client session: Apply answers")
}
