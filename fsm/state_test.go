package fsm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

const (
	s1 = 1
	s2 = 2
	s3 = 3
)

// opens returns OpenSession commands for sessions 1..n (node "n<i>"); applied
// first, they take indexes 1..n.
func opens(n int, more ...*fsmpb.Command) []*fsmpb.Command {
	var cmds []*fsmpb.Command
	for i := 1; i <= n; i++ {
		cmds = append(cmds, cmdOpen(uint64(i), sessTTL, fmt.Sprintf("n%d", i)))
	}
	return append(cmds, more...)
}

// applyCase applies setup at indexes 1..len(setup), then cmd at the next
// index, and checks the result, the events and the state.
type applyCase struct {
	name   string
	setup  []*fsmpb.Command
	cmd    *fsmpb.Command
	want   *fsmpb.Result
	events []Event
	// unchanged: the snapshot bytes are the same before and after.
	unchanged bool
	// locksUnchanged: the locks are the same (the request's result is
	// still cached in its session).
	locksUnchanged bool
	check          func(t *testing.T, s *State)
}

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, tc.setup...)
			requireInvariants(t, s)
			before, beforeLocks := mustSnapshot(t, s), locksOf(t, s)
			got, events, err := s.Apply(uint64(len(tc.setup)+1), tc.cmd)
			require.NoError(t, err)
			assertResult(t, tc.want, got)
			assert.Equal(t, tc.events, events, "events")
			if tc.unchanged {
				assert.Equal(t, before, mustSnapshot(t, s), "state changed")
			}
			if tc.locksUnchanged {
				assertLocksEqual(t, beforeLocks, locksOf(t, s))
			}
			assert.NoError(t, checkInvariants(s))
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func assertResult(t *testing.T, want, got *fsmpb.Result) bool {
	t.Helper()
	return assert.True(t, proto.Equal(want, got), "result: want {%v}, got {%v}", want, got)
}

func assertLocksEqual(t *testing.T, want, got []*fsmpb.Lock) bool {
	t.Helper()
	return assert.True(t, proto.Equal(&fsmpb.Snapshot{Locks: want}, &fsmpb.Snapshot{Locks: got}),
		"locks changed:\nbefore %v\nafter  %v", want, got)
}

// applyOK applies cmd at index in a check function and returns the result
// and the events.
func applyOK(t *testing.T, s *State, index uint64, cmd *fsmpb.Command) (*fsmpb.Result, []Event) {
	t.Helper()
	r, ev, err := s.Apply(index, cmd)
	require.NoError(t, err)
	return r, ev
}

func TestState_ApplyOpenSession(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:   "new",
			cmd:    cmdOpen(s1, sessTTL, "n1"),
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: s1, TTL: sessTTL}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []SessionInfo{{ID: s1, TTL: sessTTL, Node: "n1"}}, s.Sessions())
				assert.True(t, s.HasSession(s1))
				assert.False(t, s.HasSession(s2))
			},
		},
		{
			name:   "second session",
			setup:  opens(1),
			cmd:    cmdOpen(s2, 2*sessTTL, "n2"),
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: s2, TTL: 2 * sessTTL}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []SessionInfo{{ID: s1, TTL: sessTTL, Node: "n1"}, {ID: s2, TTL: 2 * sessTTL, Node: "n2"}}, s.Sessions())
			},
		},
		{
			name:      "idempotent re-open keeps the session as it was",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdOpen(s1, 2*sessTTL, "elsewhere"),
			want:      resOK(),
			unchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []SessionInfo{{ID: s1, TTL: sessTTL, Node: "n1"}}, s.Sessions())
				assert.Equal(t, []uint64{1}, cachedSeqs(s, s1))
			},
		},
		{
			name:      "invalid ID 0",
			cmd:       cmdOpen(0, sessTTL, "n0"),
			want:      res(fsmpb.Code_CODE_INVALID),
			unchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Empty(t, s.Sessions())
				assert.False(t, s.HasSession(0))
			},
		},
		{
			name:      "invalid TTL 0",
			cmd:       cmdOpen(s1, 0, "n1"),
			want:      res(fsmpb.Code_CODE_INVALID),
			unchanged: true,
		},
		{
			name:      "invalid negative TTL",
			cmd:       cmdOpen(s1, -time.Second, "n1"),
			want:      res(fsmpb.Code_CODE_INVALID),
			unchanged: true,
		},
		{
			name:      "invalid TTL does not touch an existing session",
			setup:     opens(1),
			cmd:       cmdOpen(s1, -1, "n1"),
			want:      res(fsmpb.Code_CODE_INVALID),
			unchanged: true,
		},
		{
			name:   "re-open after expiry starts afresh",
			setup:  opens(1, cmdAcquire(s1, 1, "a"), cmdExpireSession(s1)),
			cmd:    cmdOpen(s1, sessTTL, "n9"),
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: s1, TTL: sessTTL}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []SessionInfo{{ID: s1, TTL: sessTTL, Node: "n9"}}, s.Sessions())
				assert.Empty(t, cachedSeqs(s, s1))
				// seq 1 is not a duplicate in the new session.
				r, ev := applyOK(t, s, 5, cmdAcquire(s1, 1, "a"))
				assertResult(t, resGranted(5, 5), r)
				assert.Len(t, ev, 1)
			},
		},
		{
			// Regression: the reopened session must own the TTL lease that
			// survived its predecessor's expiry, as a restored replica does.
			name: "re-open adopts a TTL lease that outlived the expiry",
			setup: opens(2,
				cmdAcquire(s1, 1, "t", withTTL(time.Second)), // 3
				cmdAcquire(s2, 1, "t"),                       // 4, queued
				cmdExpireSession(s1),                         // 5
			),
			cmd:    cmdOpen(s1, sessTTL, "n1"),
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: s1, TTL: sessTTL}},
			check: func(t *testing.T, s *State) {
				restored, err := Restore(mustSnapshot(t, s))
				require.NoError(t, err)
				want := []Event{
					{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: time.Second, Reason: ReasonClosed},
					{Kind: EventGranted, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 7, Generation: 7},
					{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed},
				}
				for _, st := range []*State{s, restored} {
					r, ev := applyOK(t, st, 7, cmdClose(s1, 1))
					assertResult(t, resOK(), r)
					assert.Equal(t, want, ev)
					assert.NoError(t, checkInvariants(st))
				}
				assert.Equal(t, mustSnapshot(t, s), mustSnapshot(t, restored))
			},
		},
	})
}

func TestState_ApplyCloseSession(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:   "idle session",
			setup:  opens(1),
			cmd:    cmdClose(s1, 1),
			want:   resOK(),
			events: []Event{{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed}},
			check: func(t *testing.T, s *State) {
				assert.False(t, s.HasSession(s1))
				assert.Empty(t, s.Sessions())
			},
		},
		{
			name: "ends every lease, TTL leases too, and hands each off",
			setup: opens(3,
				cmdAcquire(s1, 1, "a"),                       // 4 granted
				cmdAcquire(s1, 2, "b", withTTL(time.Second)), // 5 granted
				cmdAcquire(s2, 1, "a"),                       // 6 queued
				cmdAcquire(s3, 1, "b"),                       // 7 queued
				cmdAcquire(s2, 2, "b"),                       // 8 queued
			),
			cmd:  cmdClose(s1, 3), // 9
			want: resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, Reason: ReasonClosed},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 6, Token: 9, Generation: 9},
				{Kind: EventEnded, Name: "b", Session: s1, Seq: 2, Claim: 5, Token: 5, Generation: 5, TTL: time.Second, Reason: ReasonClosed},
				{Kind: EventGranted, Name: "b", Session: s3, Seq: 1, Claim: 7, Token: 9, Generation: 9},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed},
			},
			check: func(t *testing.T, s *State) {
				assert.False(t, s.HasSession(s1))
				a, b := s.Lock("a"), s.Lock("b")
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 9, Generation: 9, Claim: 6, Session: s2, Node: "n2"}, a)
				assert.Equal(t, LockInfo{Name: "b", Held: true, Token: 9, Generation: 9, Claim: 7, Session: s3, Node: "n3", Waiters: 1}, b)
				assert.Equal(t, []uint64{8}, queueOf(s, "b"))
			},
		},
		{
			name: "withdraws its queued claims before handing off",
			setup: opens(3,
				cmdAcquire(s2, 1, "a"),                       // 4 granted
				cmdAcquire(s1, 1, "a"),                       // 5 queued
				cmdAcquire(s3, 1, "a"),                       // 6 queued
				cmdAcquire(s1, 2, "b"),                       // 7 granted
				cmdAcquire(s1, 3, "b", withTTL(time.Second)), // 8 queued behind itself
				cmdAcquire(s2, 2, "b"),                       // 9 queued
			),
			cmd:  cmdClose(s1, 4), // 10
			want: resOK(),
			events: []Event{
				{Kind: EventWithdrawn, Name: "a", Session: s1, Seq: 1, Claim: 5, Reason: ReasonClosed},
				{Kind: EventWithdrawn, Name: "b", Session: s1, Seq: 3, Claim: 8, TTL: time.Second, Reason: ReasonClosed},
				{Kind: EventEnded, Name: "b", Session: s1, Seq: 2, Claim: 7, Token: 7, Generation: 7, Reason: ReasonClosed},
				{Kind: EventGranted, Name: "b", Session: s2, Seq: 2, Claim: 9, Token: 10, Generation: 10},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 4, Generation: 4, Claim: 4, Session: s2, Node: "n2", Waiters: 1}, s.Lock("a"))
				assert.Equal(t, []uint64{6}, queueOf(s, "a"))
				assert.Equal(t, LockInfo{Name: "b", Held: true, Token: 10, Generation: 10, Claim: 9, Session: s2, Node: "n2"}, s.Lock("b"))
			},
		},
		{
			name:  "locks left empty are deleted",
			setup: opens(1, cmdAcquire(s1, 1, "a"), cmdAcquire(s1, 2, "b", withTTL(time.Second))),
			cmd:   cmdClose(s1, 3),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2, Reason: ReasonClosed},
				{Kind: EventEnded, Name: "b", Session: s1, Seq: 2, Claim: 3, Token: 3, Generation: 3, TTL: time.Second, Reason: ReasonClosed},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, locksOf(t, s))
				assert.Equal(t, LockInfo{Name: "a"}, s.Lock("a"))
				assert.Empty(t, s.TTLLeases())
			},
		},
		{
			name:      "unknown session",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdClose(s2, 1),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
		{
			name:      "closed twice: the retry finds no session",
			setup:     opens(1, cmdClose(s1, 1)),
			cmd:       cmdClose(s1, 1),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyExpireSession(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "session lease lost and handed off",
			setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")),
			cmd:   cmdExpireSession(s1), // 5
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonLost},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 4, Token: 5, Generation: 5},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost},
			},
			check: func(t *testing.T, s *State) {
				assert.False(t, s.HasSession(s1))
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 5, Generation: 5, Claim: 4, Session: s2, Node: "n2"}, s.Lock("a"))
			},
		},
		{
			name: "TTL leases of the session survive",
			setup: opens(2,
				cmdAcquire(s1, 1, "t", withTTL(time.Second)), // 3
				cmdAcquire(s2, 1, "t"),                       // 4 queued
				cmdAcquire(s1, 2, "a"),                       // 5
			),
			cmd:  cmdExpireSession(s1), // 6
			want: resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 2, Claim: 5, Token: 5, Generation: 5, Reason: ReasonLost},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{Name: "t", Held: true, Token: 3, Generation: 3, Claim: 3, Session: s1, TTL: time.Second, Waiters: 1}, s.Lock("t"))
				assert.False(t, s.Lock("a").Held)
				// Whoever names the token may still release it.
				r, ev := applyOK(t, s, 7, cmdRelease(s2, 2, "t", 3))
				assertResult(t, resOK(), r)
				assert.Equal(t, []Event{
					{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: time.Second, Reason: ReasonReleased},
					{Kind: EventGranted, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 7, Generation: 7},
				}, ev)
			},
		},
		{
			name: "queued claims are withdrawn",
			setup: opens(2,
				cmdAcquire(s2, 1, "a"),                       // 3
				cmdAcquire(s1, 1, "a", withTTL(time.Second)), // 4 queued
				cmdAcquire(s1, 2, "b"),                       // 5
				cmdAcquire(s2, 2, "b"),                       // 6 queued
			),
			cmd:  cmdExpireSession(s1), // 7
			want: resOK(),
			events: []Event{
				{Kind: EventWithdrawn, Name: "a", Session: s1, Seq: 1, Claim: 4, TTL: time.Second, Reason: ReasonLost},
				{Kind: EventEnded, Name: "b", Session: s1, Seq: 2, Claim: 5, Token: 5, Generation: 5, Reason: ReasonLost},
				{Kind: EventGranted, Name: "b", Session: s2, Seq: 2, Claim: 6, Token: 7, Generation: 7},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, queueOf(s, "a"))
				assert.Equal(t, uint64(s2), s.Lock("a").Session)
			},
		},
		{
			name: "its own queued claim is not handed the lock",
			setup: opens(2,
				cmdAcquire(s1, 1, "a"), // 3
				cmdAcquire(s1, 2, "a"), // 4 queued behind itself
				cmdAcquire(s2, 1, "a"), // 5 queued
			),
			cmd:  cmdExpireSession(s1), // 6
			want: resOK(),
			events: []Event{
				{Kind: EventWithdrawn, Name: "a", Session: s1, Seq: 2, Claim: 4, Reason: ReasonLost},
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonLost},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 5, Token: 6, Generation: 6},
				{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost},
			},
		},
		{
			name:      "stale: unknown session is a no-op",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdExpireSession(s2),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
		{
			name:      "stale: session already closed",
			setup:     opens(2, cmdAcquire(s2, 1, "a"), cmdClose(s1, 1)),
			cmd:       cmdExpireSession(s1),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
		{
			name:      "stale: expired twice",
			setup:     opens(1, cmdAcquire(s1, 1, "t", withTTL(time.Second)), cmdExpireSession(s1)),
			cmd:       cmdExpireSession(s1),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyAcquire(t *testing.T) {
	cases := []applyCase{
		{
			name:   "free: granted with token and claim = index",
			setup:  opens(1),
			cmd:    withStamp(cmdAcquire(s1, 1, "a", withOwner("worker-7")), 1234), // 2
			want:   resGranted(2, 2),
			events: []Event{{Kind: EventGranted, Name: "a", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "a", Held: true, Token: 2, Generation: 2, Claim: 2, Session: s1, Node: "n1",
					Owner: "worker-7", RefreshedUnixNano: 1234,
				}, s.Lock("a"))
				assert.Empty(t, s.TTLLeases())
			},
		},
		{
			name:   "free: TTL lease",
			setup:  opens(1),
			cmd:    withStamp(cmdAcquire(s1, 1, "t", withTTL(time.Second)), 99), // 2
			want:   resGranted(2, 2),
			events: []Event{{Kind: EventGranted, Name: "t", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2, TTL: time.Second}},
			check: func(t *testing.T, s *State) {
				want := LockInfo{Name: "t", Held: true, Token: 2, Generation: 2, Claim: 2, Session: s1, Node: "n1", TTL: time.Second, RefreshedUnixNano: 99}
				assert.Equal(t, want, s.Lock("t"))
				assert.Equal(t, []LockInfo{want}, s.TTLLeases())
			},
		},
		{
			name:   "held: queued",
			setup:  opens(2, cmdAcquire(s1, 1, "a")),
			cmd:    cmdAcquire(s2, 1, "a", withOwner("w")), // 4
			want:   resQueued(4),
			events: []Event{{Kind: EventQueued, Name: "a", Session: s2, Seq: 1, Claim: 4}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 3, Generation: 3, Claim: 3, Session: s1, Node: "n1", Waiters: 1}, s.Lock("a"))
				assert.Equal(t, []uint64{4}, queueOf(s, "a"))
			},
		},
		{
			name:   "held by the same session: queued, not reentrant",
			setup:  opens(1, cmdAcquire(s1, 1, "a")),
			cmd:    cmdAcquire(s1, 2, "a"), // 3
			want:   resQueued(3),
			events: []Event{{Kind: EventQueued, Name: "a", Session: s1, Seq: 2, Claim: 3}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []uint64{3}, queueOf(s, "a"))
			},
		},
		{
			name:   "queue is FIFO",
			setup:  opens(3, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")),
			cmd:    cmdAcquire(s3, 1, "a", withTTL(time.Second)), // 6
			want:   resQueued(6),
			events: []Event{{Kind: EventQueued, Name: "a", Session: s3, Seq: 1, Claim: 6, TTL: time.Second}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []uint64{5, 6}, queueOf(s, "a"))
			},
		},
		{
			name:           "try on a held name: HELD, nothing queued",
			setup:          opens(2, cmdAcquire(s1, 1, "a")),
			cmd:            cmdAcquire(s2, 1, "a", withTry()),
			want:           res(fsmpb.Code_CODE_HELD),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Equal(t, 0, s.Lock("a").Waiters)
			},
		},
		{
			name:   "try on a free name: granted",
			setup:  opens(1),
			cmd:    cmdAcquire(s1, 1, "a", withTry()),
			want:   resGranted(2, 2),
			events: []Event{{Kind: EventGranted, Name: "a", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2}},
		},
		{
			name:      "unknown session",
			setup:     opens(1),
			cmd:       cmdAcquire(s2, 1, "a"),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
		{
			name:      "session 0",
			setup:     opens(1),
			cmd:       cmdAcquire(0, 1, "a"),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	}
	invalid := []struct {
		name string
		cmd  *fsmpb.Command
	}{
		{"empty name", cmdAcquire(s1, 1, "")},
		{"513-byte name", cmdAcquire(s1, 1, strings.Repeat("x", MaxNameLen+1))},
		{"513-byte multi-byte name", cmdAcquire(s1, 1, strings.Repeat("é", MaxNameLen/2)+"x")},
		{"bad UTF-8", cmdAcquire(s1, 1, "a\xffb")},
		{"truncated UTF-8", cmdAcquire(s1, 1, "\xc3")},
		{"newline", cmdAcquire(s1, 1, "a\nb")},
		{"NUL", cmdAcquire(s1, 1, "\x00")},
		{"DEL", cmdAcquire(s1, 1, "a\x7f")},
		{"C1 control", cmdAcquire(s1, 1, "a\u0085")},
		{"owner 64KiB+1", cmdAcquire(s1, 1, "a", withOwner(strings.Repeat("o", MaxOwnerLen+1)))},
		{"ttl 50ms", cmdAcquire(s1, 1, "a", withTTL(50*time.Millisecond))},
		{"ttl 1ns", cmdAcquire(s1, 1, "a", withTTL(1))},
		{"ttl 25h", cmdAcquire(s1, 1, "a", withTTL(25*time.Hour))},
		{"ttl negative", cmdAcquire(s1, 1, "a", withTTL(-time.Second))},
	}
	for _, c := range invalid {
		cases = append(cases, applyCase{
			name:           "invalid " + c.name,
			setup:          opens(2, cmdAcquire(s2, 1, "a")),
			cmd:            c.cmd,
			want:           res(fsmpb.Code_CODE_INVALID),
			locksUnchanged: true,
		})
	}
	valid := []struct {
		name string
		cmd  *fsmpb.Command
		ttl  time.Duration
	}{
		{"512-byte name", cmdAcquire(s1, 1, strings.Repeat("x", MaxNameLen)), 0},
		{"512-byte multi-byte name", cmdAcquire(s1, 1, strings.Repeat("é", MaxNameLen/2)), 0},
		{"name with spaces and symbols", cmdAcquire(s1, 1, "orders/42 ✓"), 0},
		{"owner 64KiB", cmdAcquire(s1, 1, "a", withOwner(strings.Repeat("o", MaxOwnerLen))), 0},
		{"ttl 100ms", cmdAcquire(s1, 1, "a", withTTL(MinTTL)), MinTTL},
		{"ttl 24h", cmdAcquire(s1, 1, "a", withTTL(MaxTTL)), MaxTTL},
	}
	for _, c := range valid {
		cases = append(cases, applyCase{
			name:   "valid " + c.name,
			setup:  opens(1),
			cmd:    c.cmd,
			want:   resGranted(2, 2),
			events: []Event{{Kind: EventGranted, Name: c.cmd.GetAcquire().GetName(), Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2, TTL: c.ttl}},
		})
	}
	runApplyCases(t, cases)
}

func TestState_ApplyRelease(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "holder: released and handed off",
			setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a", withTTL(time.Second), withOwner("two"))),
			cmd:   withStamp(cmdRelease(s1, 2, "a", 3), 5000), // 5
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonReleased},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 4, Token: 5, Generation: 5, TTL: time.Second},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "a", Held: true, Token: 5, Generation: 5, Claim: 4, Session: s2, Node: "n2",
					Owner: "two", TTL: time.Second, RefreshedUnixNano: 5000,
				}, s.Lock("a"))
			},
		},
		{
			name:   "last claim: the lock is deleted",
			setup:  opens(1, cmdAcquire(s1, 1, "a")),
			cmd:    cmdRelease(s1, 2, "a", 2),
			want:   resOK(),
			events: []Event{{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2, Reason: ReasonReleased}},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, locksOf(t, s))
			},
		},
		{
			name:  "another session naming the token",
			setup: opens(2, cmdAcquire(s1, 1, "a")),
			cmd:   cmdRelease(s2, 1, "a", 3),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonReleased},
			},
		},
		{
			name:  "TTL lease of an expired session",
			setup: opens(2, cmdAcquire(s1, 1, "t", withTTL(time.Second)), cmdExpireSession(s1)),
			cmd:   cmdRelease(s2, 1, "t", 3),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: time.Second, Reason: ReasonReleased},
			},
		},
		{
			name:           "wrong token",
			setup:          opens(1, cmdAcquire(s1, 1, "a")),
			cmd:            cmdRelease(s1, 2, "a", 99),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "token of a queued claim",
			setup:          opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")),
			cmd:            cmdRelease(s2, 2, "a", 4),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name: "old token after a hand-off",
			setup: opens(2,
				cmdAcquire(s1, 1, "a"),    // 3
				cmdAcquire(s2, 1, "a"),    // 4
				cmdRelease(s1, 2, "a", 3), // 5: s2 holds with token 5
			),
			cmd:            cmdRelease(s1, 3, "a", 3),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Equal(t, uint64(5), s.Lock("a").Token)
			},
		},
		{
			name:           "unknown name",
			setup:          opens(1, cmdAcquire(s1, 1, "a")),
			cmd:            cmdRelease(s1, 2, "b", 2),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:      "unknown session",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdRelease(s2, 1, "a", 2),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyRefresh(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "TTL lease: new generation and stamp",
			setup: opens(1, withStamp(cmdAcquire(s1, 1, "t", withTTL(time.Second)), 100)),
			cmd:   withStamp(cmdRefresh(s1, 2, "t", 2), 200), // 3
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 2},
			events: []Event{
				{Kind: EventRefreshed, Name: "t", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 3, TTL: time.Second},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "t", Held: true, Token: 2, Generation: 3, Claim: 2, Session: s1, Node: "n1",
					TTL: time.Second, RefreshedUnixNano: 200,
				}, s.Lock("t"))
			},
		},
		{
			name:  "TTL lease of an expired session, by another session",
			setup: opens(2, cmdAcquire(s1, 1, "t", withTTL(time.Second)), cmdExpireSession(s1)),
			cmd:   cmdRefresh(s2, 1, "t", 3), // 5
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 3},
			events: []Event{
				{Kind: EventRefreshed, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 5, TTL: time.Second},
			},
		},
		{
			name:           "session lease: OK without change",
			setup:          opens(1, withStamp(cmdAcquire(s1, 1, "a"), 100)),
			cmd:            withStamp(cmdRefresh(s1, 2, "a", 2), 200),
			want:           &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 2},
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				li := s.Lock("a")
				assert.Equal(t, uint64(2), li.Generation)
				assert.Equal(t, int64(100), li.RefreshedUnixNano)
			},
		},
		{
			name:           "wrong token",
			setup:          opens(1, cmdAcquire(s1, 1, "t", withTTL(time.Second))),
			cmd:            cmdRefresh(s1, 2, "t", 3),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "unknown name",
			setup:          opens(1),
			cmd:            cmdRefresh(s1, 1, "t", 1),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:      "unknown session",
			setup:     opens(1, cmdAcquire(s1, 1, "t", withTTL(time.Second))),
			cmd:       cmdRefresh(s2, 1, "t", 2),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyCancel(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "queued: withdrawn",
			setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a", withTTL(time.Second))),
			cmd:   cmdCancel(s2, 2, "a", 4),
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Claim: 4},
			events: []Event{
				{Kind: EventWithdrawn, Name: "a", Session: s2, Seq: 1, Claim: 4, TTL: time.Second, Reason: ReasonReleased},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 3, Generation: 3, Claim: 3, Session: s1, Node: "n1"}, s.Lock("a"))
			},
		},
		{
			name: "queued in the middle: the order of the rest is kept",
			setup: opens(3,
				cmdAcquire(s1, 1, "a"), // 4
				cmdAcquire(s2, 1, "a"), // 5
				cmdAcquire(s3, 1, "a"), // 6
				cmdAcquire(s2, 2, "a"), // 7
			),
			cmd:  cmdCancel(s3, 2, "a", 6),
			want: &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Claim: 6},
			events: []Event{
				{Kind: EventWithdrawn, Name: "a", Session: s3, Seq: 1, Claim: 6, Reason: ReasonReleased},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []uint64{5, 7}, queueOf(s, "a"))
			},
		},
		{
			name:  "holding: released with the token in the result and handed off",
			setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")),
			cmd:   cmdCancel(s1, 2, "a", 3), // 5
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 3, Claim: 3},
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonReleased},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 4, Token: 5, Generation: 5},
			},
		},
		{
			name:  "holding a lease granted by hand-off: token differs from claim",
			setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a"), cmdRelease(s1, 2, "a", 3)),
			cmd:   cmdCancel(s2, 2, "a", 4), // 6
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 5, Claim: 4},
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s2, Seq: 1, Claim: 4, Token: 5, Generation: 5, Reason: ReasonReleased},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, locksOf(t, s))
			},
		},
		{
			name:           "unknown claim",
			setup:          opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")),
			cmd:            cmdCancel(s2, 2, "a", 99),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "claim of another name",
			setup:          opens(1, cmdAcquire(s1, 1, "a"), cmdAcquire(s1, 2, "b")),
			cmd:            cmdCancel(s1, 3, "b", 2),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "claim that already ended",
			setup:          opens(1, cmdAcquire(s1, 1, "a"), cmdRelease(s1, 2, "a", 2), cmdAcquire(s1, 3, "a")),
			cmd:            cmdCancel(s1, 4, "a", 2),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "unknown name",
			setup:          opens(1),
			cmd:            cmdCancel(s1, 1, "a", 1),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:      "unknown session",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdCancel(s2, 1, "a", 2),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyExpireLease(t *testing.T) {
	ttl := withTTL(time.Second)
	runApplyCases(t, []applyCase{
		{
			name:  "matching token and generation: expired and handed off",
			setup: opens(2, cmdAcquire(s1, 1, "t", ttl), cmdAcquire(s2, 1, "t")),
			cmd:   cmdExpireLease("t", 3, 3), // 5
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: time.Second, Reason: ReasonExpired},
				{Kind: EventGranted, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 5, Generation: 5},
			},
		},
		{
			name:      "stale generation after a refresh: no-op",
			setup:     opens(1, cmdAcquire(s1, 1, "t", ttl), cmdRefresh(s1, 2, "t", 2)),
			cmd:       cmdExpireLease("t", 2, 2),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:  "generation of the refresh",
			setup: opens(1, cmdAcquire(s1, 1, "t", ttl), cmdRefresh(s1, 2, "t", 2)),
			cmd:   cmdExpireLease("t", 2, 3),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 3, TTL: time.Second, Reason: ReasonExpired},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, locksOf(t, s))
			},
		},
		{
			name:      "stale token: the name was granted again",
			setup:     opens(2, cmdAcquire(s1, 1, "t", ttl), cmdRelease(s1, 2, "t", 3), cmdAcquire(s2, 1, "t", ttl)),
			cmd:       cmdExpireLease("t", 3, 3),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:      "session lease is never expired by it",
			setup:     opens(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdExpireLease("a", 2, 2),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:      "unknown name",
			setup:     opens(1),
			cmd:       cmdExpireLease("t", 1, 1),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:  "TTL lease of an expired session",
			setup: opens(1, cmdAcquire(s1, 1, "t", ttl), cmdExpireSession(s1)),
			cmd:   cmdExpireLease("t", 2, 2),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2, TTL: time.Second, Reason: ReasonExpired},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, locksOf(t, s))
				assert.Empty(t, s.TTLLeases())
			},
		},
	})
}

// TestState_ApplyDuplicate applies a request, then the same (session, seq)
// again: the second answer is the first, with no effect and no events.
func TestState_ApplyDuplicate(t *testing.T) {
	ttl := withTTL(time.Second)
	cases := []struct {
		name  string
		setup []*fsmpb.Command
		cmd   *fsmpb.Command
		retry *fsmpb.Command // default: cmd again
		want  *fsmpb.Result
	}{
		{name: "acquire granted", setup: opens(1), cmd: cmdAcquire(s1, 1, "a"), want: resGranted(2, 2)},
		{name: "acquire queued", setup: opens(2, cmdAcquire(s1, 1, "a")), cmd: cmdAcquire(s2, 1, "a"), want: resQueued(4)},
		{name: "acquire held", setup: opens(2, cmdAcquire(s1, 1, "a")), cmd: cmdAcquire(s2, 1, "a", withTry()), want: res(fsmpb.Code_CODE_HELD)},
		{name: "acquire invalid", setup: opens(1), cmd: cmdAcquire(s1, 1, ""), want: res(fsmpb.Code_CODE_INVALID)},
		{name: "release", setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")), cmd: cmdRelease(s1, 2, "a", 3), want: resOK()},
		{name: "release not held", setup: opens(1), cmd: cmdRelease(s1, 1, "a", 1), want: res(fsmpb.Code_CODE_NOT_HELD)},
		{name: "refresh", setup: opens(1, cmdAcquire(s1, 1, "t", ttl)), cmd: cmdRefresh(s1, 2, "t", 2), want: &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 2}},
		{name: "cancel queued", setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")), cmd: cmdCancel(s2, 2, "a", 4), want: &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Claim: 4}},
		{name: "cancel holding", setup: opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")), cmd: cmdCancel(s1, 2, "a", 3), want: &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 3, Claim: 3}},
		{
			name:  "same seq, different command: the first answer",
			setup: opens(1),
			cmd:   cmdAcquire(s1, 1, "a"),
			retry: cmdAcquire(s1, 1, "b"),
			want:  resGranted(2, 2),
		},
		{
			name:  "acked_below on the retry does not prune",
			setup: opens(1, cmdAcquire(s1, 1, "x")),
			cmd:   cmdAcquire(s1, 2, "a"),
			retry: withAcked(cmdAcquire(s1, 2, "a"), 2),
			want:  resGranted(3, 3),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, tc.setup...)
			index := uint64(len(tc.setup) + 1)
			first, _ := applyOK(t, s, index, tc.cmd)
			require.True(t, proto.Equal(tc.want, first), "first: want {%v}, got {%v}", tc.want, first)
			before := mustSnapshot(t, s)
			retry := tc.retry
			if retry == nil {
				retry = proto.Clone(tc.cmd).(*fsmpb.Command)
			}
			second, events, err := s.Apply(index+1, withStamp(retry, 777))
			require.NoError(t, err)
			assertResult(t, first, second)
			assert.Nil(t, events)
			assert.Equal(t, before, mustSnapshot(t, s), "the retry changed state")
		})
	}
}

// step is one entry of a scripted history.
type step struct {
	cmd    *fsmpb.Command
	want   *fsmpb.Result
	events int // number of events expected
	// unchanged: the snapshot bytes are the same before and after.
	unchanged bool
}

// runScript applies steps at indexes 1, 2, ...
func runScript(t *testing.T, s *State, from uint64, steps []step) uint64 {
	t.Helper()
	for i, st := range steps {
		index := from + uint64(i)
		before := mustSnapshot(t, s)
		got, events, err := s.Apply(index, st.cmd)
		require.NoError(t, err, "index %d", index)
		assert.True(t, proto.Equal(st.want, got), "index %d: want {%v}, got {%v}", index, st.want, got)
		assert.Len(t, events, st.events, "index %d events: %v", index, events)
		if st.unchanged {
			assert.Equal(t, before, mustSnapshot(t, s), "index %d changed state", index)
		}
		require.NoError(t, checkInvariants(s), "index %d", index)
	}
	return from + uint64(len(steps))
}

func TestState_ApplyAckedBelow(t *testing.T) {
	t.Run("prunes, then old seqs are forgotten", func(t *testing.T) {
		s := New()
		runScript(t, s, 1, []step{
			{cmd: cmdOpen(s1, sessTTL, "n1"), want: resOK(), events: 1},
			{cmd: cmdAcquire(s1, 1, "a"), want: resGranted(2, 2), events: 1},
			{cmd: cmdAcquire(s1, 2, "b"), want: resGranted(3, 3), events: 1},
			{cmd: cmdAcquire(s1, 3, "c"), want: resGranted(4, 4), events: 1},
		})
		assert.Equal(t, []uint64{1, 2, 3}, cachedSeqs(s, s1))
		runScript(t, s, 5, []step{
			{cmd: withAcked(cmdRelease(s1, 4, "a", 2), 3), want: resOK(), events: 1},
		})
		assert.Equal(t, []uint64{3, 4}, cachedSeqs(s, s1))
		assert.Equal(t, uint64(3), decodeSnapshot(t, s).GetSessions()[0].GetAckedBelow())
		runScript(t, s, 6, []step{
			{cmd: cmdAcquire(s1, 1, "a"), want: res(fsmpb.Code_CODE_FORGOTTEN), unchanged: true},
			{cmd: cmdAcquire(s1, 2, "b"), want: res(fsmpb.Code_CODE_FORGOTTEN), unchanged: true},
			{cmd: cmdAcquire(s1, 3, "c"), want: resGranted(4, 4), unchanged: true},
			{cmd: cmdRelease(s1, 4, "a", 2), want: resOK(), unchanged: true},
			// A lower acked_below than recorded changes nothing.
			{cmd: withAcked(cmdRelease(s1, 5, "b", 3), 1), want: resOK(), events: 1},
		})
		assert.Equal(t, []uint64{3, 4, 5}, cachedSeqs(s, s1))
	})
	t.Run("never forgets the seq in hand", func(t *testing.T) {
		s := New()
		runScript(t, s, 1, []step{
			{cmd: cmdOpen(s1, sessTTL, "n1"), want: resOK(), events: 1},
			{cmd: cmdAcquire(s1, 1, "a"), want: resGranted(2, 2), events: 1},
			{cmd: withAcked(cmdAcquire(s1, 2, "b"), 10), want: resGranted(3, 3), events: 1},
			{cmd: cmdAcquire(s1, 2, "b"), want: resGranted(3, 3), unchanged: true},
			{cmd: cmdAcquire(s1, 1, "a"), want: res(fsmpb.Code_CODE_FORGOTTEN), unchanged: true},
		})
		assert.Equal(t, []uint64{2}, cachedSeqs(s, s1))
		assert.Equal(t, uint64(2), decodeSnapshot(t, s).GetSessions()[0].GetAckedBelow())
	})
	t.Run("sessions are independent", func(t *testing.T) {
		s := New()
		runScript(t, s, 1, []step{
			{cmd: cmdOpen(s1, sessTTL, "n1"), want: resOK(), events: 1},
			{cmd: cmdOpen(s2, sessTTL, "n2"), want: resOK(), events: 1},
			{cmd: withAcked(cmdAcquire(s1, 5, "a"), 5), want: resGranted(3, 3), events: 1},
			{cmd: cmdAcquire(s2, 1, "b"), want: resGranted(4, 4), events: 1},
			{cmd: cmdAcquire(s2, 5, "c"), want: resGranted(5, 5), events: 1},
		})
	})
	t.Run("unknown session is not cached", func(t *testing.T) {
		s := New()
		runScript(t, s, 1, []step{
			{cmd: cmdAcquire(s1, 1, "a"), want: res(fsmpb.Code_CODE_UNKNOWN_SESSION), unchanged: true},
			{cmd: cmdOpen(s1, sessTTL, "n1"), want: resOK(), events: 1},
			{cmd: cmdAcquire(s1, 1, "a"), want: resGranted(3, 3), events: 1},
		})
	})
}

func TestState_ApplyResultCacheCap(t *testing.T) {
	s := mustApply(t, cmdOpen(s1, sessTTL, "n1"), cmdAcquire(s1, 1, "a")) // seq 1 at index 2
	index := uint64(3)
	for seq := uint64(2); seq <= MaxCachedResults; seq++ {
		applyOK(t, s, index, cmdRelease(s1, seq, "none", 1))
		index++
	}
	require.Len(t, cachedSeqs(s, s1), MaxCachedResults)
	require.Equal(t, uint64(1), cachedSeqs(s, s1)[0])

	// One more: the lowest seq goes and acked_below rises past it.
	applyOK(t, s, index, cmdRelease(s1, MaxCachedResults+1, "none", 1))
	index++
	seqs := cachedSeqs(s, s1)
	assert.Len(t, seqs, MaxCachedResults)
	assert.Equal(t, uint64(2), seqs[0])
	assert.Equal(t, uint64(MaxCachedResults+1), seqs[len(seqs)-1])
	assert.Equal(t, uint64(2), decodeSnapshot(t, s).GetSessions()[0].GetAckedBelow())
	requireInvariants(t, s)

	runScript(t, s, index, []step{
		{cmd: cmdAcquire(s1, 1, "a"), want: res(fsmpb.Code_CODE_FORGOTTEN), unchanged: true},
		{cmd: cmdRelease(s1, 2, "a", 2), want: res(fsmpb.Code_CODE_NOT_HELD), unchanged: true},
	})

	// A straggler below a full cache is applied once and its result is the
	// one pruned: a retry is FORGOTTEN, never applied again.
	s = mustApply(t, cmdOpen(s1, sessTTL, "n1"))
	index = 2
	for seq := uint64(10); seq < 10+MaxCachedResults; seq++ {
		applyOK(t, s, index, cmdRelease(s1, seq, "none", 1))
		index++
	}
	r, ev := applyOK(t, s, index, cmdAcquire(s1, 5, "a"))
	assertResult(t, resGranted(index, index), r)
	assert.Len(t, ev, 1)
	runScript(t, s, index+1, []step{
		{cmd: cmdAcquire(s1, 5, "a"), want: res(fsmpb.Code_CODE_FORGOTTEN), unchanged: true},
	})
	assert.Len(t, cachedSeqs(s, s1), MaxCachedResults)
	requireInvariants(t, s)
}

func TestState_ApplyUnknownCommand(t *testing.T) {
	cases := []struct {
		name    string
		cmd     *fsmpb.Command
		wantErr bool
	}{
		{name: "no op, ignorable", cmd: &fsmpb.Command{Ignorable: true, StampUnixNano: 5}},
		{name: "future op, ignorable", cmd: unknownCommand(true)},
		{name: "no op", cmd: &fsmpb.Command{StampUnixNano: 5}, wantErr: true},
		{name: "future op", cmd: unknownCommand(false), wantErr: true},
		{name: "nil command", cmd: nil, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, opens(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a"))...)
			before := mustSnapshot(t, s)
			got, events, err := s.Apply(5, tc.cmd)
			if tc.wantErr {
				assert.ErrorIs(t, err, ErrUnknownCommand)
				assert.Nil(t, got)
			} else {
				assert.NoError(t, err)
				assertResult(t, res(fsmpb.Code_CODE_UNSPECIFIED), got)
			}
			assert.Nil(t, events)
			assert.Equal(t, before, mustSnapshot(t, s), "state changed")
		})
	}
}

// TestState_ApplyHandOffTokens hands one name around by every way a lease
// can end and checks that each grant's token is its entry's index and
// larger than all before it (I2).
func TestState_ApplyHandOffTokens(t *testing.T) {
	s := mustApply(t, opens(3,
		cmdAcquire(s1, 1, "a", withTTL(time.Second)), // 4 granted
		cmdAcquire(s2, 1, "a"),                       // 5
		cmdAcquire(s3, 1, "a", withTTL(time.Second)), // 6
		cmdAcquire(s1, 2, "a"),                       // 7
		cmdAcquire(s2, 2, "a"),                       // 8
		cmdAcquire(s3, 2, "a"),                       // 9
	)...)
	var tokens []uint64
	index := uint64(10)
	for _, next := range []func() *fsmpb.Command{
		func() *fsmpb.Command { li := s.Lock("a"); return cmdExpireLease("a", li.Token, li.Generation) }, // s1's TTL lease
		func() *fsmpb.Command { return cmdRelease(s2, 3, "a", s.Lock("a").Token) },                       // s2
		func() *fsmpb.Command { return cmdCancel(s3, 3, "a", s.Lock("a").Claim) },                        // s3's TTL lease
		func() *fsmpb.Command { return cmdExpireSession(s1) },                                            // s1 session lease
		func() *fsmpb.Command { return cmdClose(s2, 4) },                                                 // s2
		func() *fsmpb.Command { return cmdRelease(s3, 4, "a", s.Lock("a").Token) },                       // s3, last
	} {
		_, events := applyOK(t, s, index, next())
		for _, ev := range events {
			if ev.Kind == EventGranted {
				assert.Equal(t, index, ev.Token)
				tokens = append(tokens, ev.Token)
			}
		}
		requireInvariants(t, s)
		index++
	}
	assert.Equal(t, []uint64{10, 11, 12, 13, 14}, tokens)
	assert.False(t, s.Lock("a").Held)
}

func TestEndReason_String(t *testing.T) {
	for r, want := range map[EndReason]string{
		ReasonReleased: "released", ReasonExpired: "expired", ReasonLost: "lost", ReasonClosed: "closed",
		0: "EndReason(0)", 9: "EndReason(9)",
	} {
		assert.Equal(t, want, r.String())
	}
}
