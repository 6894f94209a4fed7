package fsm

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Tests of protocol 2 (DESIGN.md, "Protocol 2: revoke, adopt, ages").

// opens2 is opens(n) followed by SetProtocol{2} at index n+1; more start
// at index n+2.
func opens2(n int, more ...*fsmpb.Command) []*fsmpb.Command {
	return append(opens(n, cmdSetProtocol(2)), more...)
}

func resToken(token uint64) *fsmpb.Result {
	return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: token}
}

func TestState_ApplySetProtocol(t *testing.T) {
	level := func(want int) func(t *testing.T, s *State) {
		return func(t *testing.T, s *State) {
			t.Helper()
			assert.Equal(t, want, s.Protocol())
		}
	}
	runApplyCases(t, []applyCase{
		{name: "raises 1 to 2", setup: opens(1), cmd: cmdSetProtocol(2), want: resOK(), check: func(t *testing.T, s *State) {
			assert.Equal(t, 2, s.Protocol())
			snap := decodeSnapshot(t, s)
			assert.Equal(t, uint32(2), snap.GetVersion())
			assert.Equal(t, uint32(2), snap.GetProtocol())
		}},
		{name: "at the current level: no-op", setup: opens2(1), cmd: cmdSetProtocol(2), want: resOK(), unchanged: true, check: level(2)},
		{name: "never lowers", setup: opens2(1), cmd: cmdSetProtocol(1), want: resOK(), unchanged: true, check: level(2)},
		{name: "level 1 at level 1: no-op", setup: opens(1), cmd: cmdSetProtocol(1), want: resOK(), unchanged: true, check: level(1)},
		{name: "level 0: no-op", setup: opens(1), cmd: cmdSetProtocol(0), want: resOK(), unchanged: true, check: level(1)},
	})
	assert.Equal(t, 1, New().Protocol(), "a new state is at level 1")
}

// TestState_ApplySetProtocolAboveBuild: a level this build cannot speak
// stops the replica (ErrUnknownCommand) and changes nothing.
func TestState_ApplySetProtocolAboveBuild(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []*fsmpb.Command
		level uint32
	}{
		{"3 at level 1", opens(1), uint32(Protocol) + 1},
		{"3 at level 2", opens2(1), uint32(Protocol) + 1},
		{"max at level 2", opens2(1), math.MaxUint32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, tc.setup...)
			before, level := mustSnapshot(t, s), s.Protocol()
			got, events, err := s.Apply(uint64(len(tc.setup)+1), cmdSetProtocol(tc.level))
			require.ErrorIs(t, err, ErrUnknownCommand)
			assert.Nil(t, got)
			assert.Nil(t, events)
			assert.Equal(t, level, s.Protocol())
			assert.Equal(t, before, mustSnapshot(t, s), "state changed")
		})
	}
}

// TestState_ApplyBelowLevel2: the commands of protocol 2 answer
// UNSUPPORTED at level 1 and change nothing, not even the request cache
// (acked_below would prune it), so the same request acts once the level
// is raised.
func TestState_ApplyBelowLevel2(t *testing.T) {
	setup := opens(2,
		cmdAcquire(s1, 1, "t", withTTL(time.Second)), // 3
		cmdAcquire(s1, 2, "a"),                       // 4
	)
	cases := []struct {
		name  string
		cmd   *fsmpb.Command
		after *fsmpb.Result // its result at level 2
	}{
		{"revoke", withAcked(cmdRevoke(s1, 3, "t", 3), 3), resToken(3)},
		{"end revoked", cmdEndRevoked("t", 3), res(fsmpb.Code_CODE_NOT_HELD)},
		{"adopt", withAcked(cmdAdopt(s2, 1, "t", 3), 1), &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 3, Claim: 3, Generation: 7, TtlNs: int64(time.Second)}},
		{"revoke of an unknown session", cmdRevoke(s3, 1, "t", 3), res(fsmpb.Code_CODE_UNKNOWN_SESSION)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, setup...)
			before := mustSnapshot(t, s)
			got, events, err := s.Apply(5, tc.cmd)
			require.NoError(t, err)
			assertResult(t, res(fsmpb.Code_CODE_UNSUPPORTED), got)
			assert.Nil(t, events)
			assert.Equal(t, before, mustSnapshot(t, s), "state changed")

			applyOK(t, s, 6, cmdSetProtocol(2))
			got, _ = applyOK(t, s, 7, tc.cmd)
			assertResult(t, tc.after, got)
			requireInvariants(t, s)
		})
	}
}

// TestState_ApplyStamps: grant and queue stamps are recorded at level 2
// only.
func TestState_ApplyStamps(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:   "level 1: no grant stamp",
			setup:  opens(1),
			cmd:    withStamp(cmdAcquire(s1, 1, "a"), 500), // 2
			want:   resGranted(2, 2),
			events: []Event{{Kind: EventGranted, Name: "a", Session: s1, Seq: 1, Claim: 2, Token: 2, Generation: 2}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{Name: "a", Held: true, Token: 2, Generation: 2, Claim: 2, Session: s1, Node: "n1", RefreshedUnixNano: 500}, s.Lock("a"))
			},
		},
		{
			name:   "level 1: no queue stamp",
			setup:  opens(2, cmdAcquire(s1, 1, "a")),
			cmd:    withStamp(cmdAcquire(s2, 1, "a"), 500), // 4
			want:   resQueued(4),
			events: []Event{{Kind: EventQueued, Name: "a", Session: s2, Seq: 1, Claim: 4}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []ClaimInfo{{Claim: 4, Session: s2, Node: "n2"}}, s.Queue("a", 0))
			},
		},
		{
			name:   "level 2: grant stamp",
			setup:  opens2(1),
			cmd:    withStamp(cmdAcquire(s1, 1, "a"), 500), // 3
			want:   resGranted(3, 3),
			events: []Event{{Kind: EventGranted, Name: "a", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "a", Held: true, Token: 3, Generation: 3, Claim: 3, Session: s1, Node: "n1",
					RefreshedUnixNano: 500, GrantedUnixNano: 500,
				}, s.Lock("a"))
			},
		},
		{
			name:   "level 2: queue stamp",
			setup:  opens2(2, cmdAcquire(s1, 1, "a")),
			cmd:    withStamp(cmdAcquire(s2, 1, "a", withTTL(time.Second), withOwner("w")), 600), // 5
			want:   resQueued(5),
			events: []Event{{Kind: EventQueued, Name: "a", Session: s2, Seq: 1, Claim: 5, TTL: time.Second}},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []ClaimInfo{{Claim: 5, Session: s2, Node: "n2", Owner: "w", TTL: time.Second, QueuedUnixNano: 600}}, s.Queue("a", 0))
			},
		},
		{
			name:  "level 2: a hand-off is stamped by the entry that hands off; a refresh keeps it",
			setup: opens2(2, withStamp(cmdAcquire(s1, 1, "a"), 100), withStamp(cmdAcquire(s2, 1, "a", withTTL(time.Second)), 200)),
			cmd:   withStamp(cmdRelease(s1, 2, "a", 4), 300), // 6
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, Reason: ReasonReleased},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 5, Token: 6, Generation: 6, TTL: time.Second},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, int64(300), s.Lock("a").GrantedUnixNano)
				applyOK(t, s, 7, withStamp(cmdRefresh(s2, 2, "a", 6), 400))
				assert.Equal(t, int64(300), s.Lock("a").GrantedUnixNano)
				assert.Equal(t, int64(400), s.Lock("a").RefreshedUnixNano)
			},
		},
		{
			name:  "granted at level 1: no stamp after the raise",
			setup: opens(1, withStamp(cmdAcquire(s1, 1, "a"), 100)),
			cmd:   withStamp(cmdSetProtocol(2), 200), // 3
			want:  resOK(),
			check: func(t *testing.T, s *State) {
				assert.Zero(t, s.Lock("a").GrantedUnixNano)
			},
		},
	})
}

func TestState_ApplyRevoke(t *testing.T) {
	ttl := withTTL(time.Second)
	runApplyCases(t, []applyCase{
		{
			name:  "session lease: marked revoked, its holder told",
			setup: opens2(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a", ttl)), // 4 granted, 5 queued
			cmd:   cmdRevoke(s2, 2, "a", 4),                                       // 6
			want:  resToken(4),
			events: []Event{
				{Kind: EventRevoking, Name: "a", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, TTL: sessTTL},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "a", Held: true, Token: 4, Generation: 4, Claim: 4, Session: s1, Node: "n1", Waiters: 1, Revoked: true,
				}, s.Lock("a"))
				assert.Equal(t, []RevokedLease{{Name: "a", Token: 4, Session: s1, Grace: sessTTL}}, s.Revoked())
				assert.Equal(t, []uint64{5}, queueOf(s, "a"))
			},
		},
		{
			name:  "TTL lease: the grace is its session's TTL, not the lease's",
			setup: opens2(1, cmdAcquire(s1, 1, "t", ttl)), // 3
			cmd:   cmdRevoke(s1, 2, "t", 3),               // 4
			want:  resToken(3),
			events: []Event{
				{Kind: EventRevoking, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: sessTTL},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []RevokedLease{{Name: "t", Token: 3, Session: s1, Grace: sessTTL}}, s.Revoked())
				assert.Equal(t, []LockInfo{s.Lock("t")}, s.TTLLeases())
			},
		},
		{
			name:  "TTL lease of a session that is gone: ended at once and handed off",
			setup: opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdAcquire(s2, 1, "t"), cmdExpireSession(s1)), // 4, 5 queued, 6
			cmd:   cmdRevoke(s2, 2, "t", 4),                                                             // 7
			want:  resToken(4),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, TTL: time.Second, Reason: ReasonRevoked},
				{Kind: EventGranted, Name: "t", Session: s2, Seq: 1, Claim: 5, Token: 7, Generation: 7},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, s.Revoked())
				assert.Equal(t, uint64(s2), s.Lock("t").Session)
			},
		},
		{
			name:           "already revoked: no change",
			setup:          opens2(2, cmdAcquire(s1, 1, "a"), cmdRevoke(s2, 1, "a", 4)),
			cmd:            cmdRevoke(s2, 2, "a", 4),
			want:           resToken(4),
			locksUnchanged: true,
		},
		{
			name:           "wrong token",
			setup:          opens2(2, cmdAcquire(s1, 1, "a")),
			cmd:            cmdRevoke(s2, 1, "a", 3),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "only queued: not held",
			setup:          opens2(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a")), // 4, 5 queued
			cmd:            cmdRevoke(s2, 2, "a", 5),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "unknown name",
			setup:          opens2(1),
			cmd:            cmdRevoke(s1, 1, "a", 2),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:      "unknown session",
			setup:     opens2(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdRevoke(s2, 1, "a", 3),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

func TestState_ApplyEndRevoked(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:  "revoked: ended and handed off",
			setup: opens2(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a", withTTL(time.Second)), cmdRevoke(s2, 2, "a", 4)), // 4, 5 queued, 6
			cmd:   cmdEndRevoked("a", 4),                                                                                     // 7
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, Reason: ReasonRevoked},
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 1, Claim: 5, Token: 7, Generation: 7, TTL: time.Second},
			},
			check: func(t *testing.T, s *State) {
				assert.Empty(t, s.Revoked())
				assert.False(t, s.Lock("a").Revoked, "the next lease is not revoked")
			},
		},
		{
			name:      "not revoked: no-op",
			setup:     opens2(1, cmdAcquire(s1, 1, "a")),
			cmd:       cmdEndRevoked("a", 3),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:      "stale: the holder let go and the name went on",
			setup:     opens2(2, cmdAcquire(s1, 1, "a"), cmdAcquire(s2, 1, "a"), cmdRevoke(s2, 2, "a", 4), cmdRelease(s1, 2, "a", 4)), // s2 holds, token 7
			cmd:       cmdEndRevoked("a", 4),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:      "unknown name",
			setup:     opens2(1),
			cmd:       cmdEndRevoked("a", 4),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
	})
}

// TestState_ApplyRevokedEnds: every end of a revoked lease has reason
// REVOKED; a revoked lease cannot be refreshed or adopted.
func TestState_ApplyRevokedEnds(t *testing.T) {
	// A revoked TTL lease "t" of s1 (token 4), and s2 alive.
	revokedTTL := opens2(2, cmdAcquire(s1, 1, "t", withTTL(time.Second)), cmdRevoke(s2, 1, "t", 4)) // 4, 5
	// A revoked session lease "a" of s1 (token 4).
	revokedSession := opens2(2, cmdAcquire(s1, 1, "a"), cmdRevoke(s2, 1, "a", 4)) // 4, 5
	endedT := Event{Kind: EventEnded, Name: "t", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, TTL: time.Second, Reason: ReasonRevoked}
	endedA := Event{Kind: EventEnded, Name: "a", Session: s1, Seq: 1, Claim: 4, Token: 4, Generation: 4, Reason: ReasonRevoked}
	gone := func(name string) func(t *testing.T, s *State) {
		return func(t *testing.T, s *State) {
			assert.False(t, s.Lock(name).Held)
			assert.Empty(t, s.Revoked())
		}
	}
	runApplyCases(t, []applyCase{
		{name: "release", setup: revokedTTL, cmd: cmdRelease(s1, 2, "t", 4), want: resOK(), events: []Event{endedT}, check: gone("t")},
		{
			name:  "release with a waiter: handed off",
			setup: append(revokedSession[:len(revokedSession):len(revokedSession)], cmdAcquire(s2, 2, "a")), // 6 queued
			cmd:   cmdRelease(s1, 2, "a", 4),                                                                // 7
			want:  resOK(),
			events: []Event{
				endedA,
				{Kind: EventGranted, Name: "a", Session: s2, Seq: 2, Claim: 6, Token: 7, Generation: 7},
			},
		},
		{name: "cancel", setup: revokedTTL, cmd: cmdCancel(s1, 2, "t", 4), want: &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 4, Claim: 4}, events: []Event{endedT}, check: gone("t")},
		{name: "expire lease", setup: revokedTTL, cmd: cmdExpireLease("t", 4, 4), want: resOK(), events: []Event{endedT}, check: gone("t")},
		{name: "end revoked", setup: revokedTTL, cmd: cmdEndRevoked("t", 4), want: resOK(), events: []Event{endedT}, check: gone("t")},
		{
			name: "its session expires: a revoked TTL lease ends too", setup: revokedTTL, cmd: cmdExpireSession(s1), want: resOK(),
			events: []Event{endedT, {Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost}}, check: gone("t"),
		},
		{
			name: "its session closes", setup: revokedTTL, cmd: cmdClose(s1, 2), want: resOK(),
			events: []Event{endedT, {Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed}}, check: gone("t"),
		},
		{
			name: "session lease: its session expires", setup: revokedSession, cmd: cmdExpireSession(s1), want: resOK(),
			events: []Event{endedA, {Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonLost}}, check: gone("a"),
		},
		{name: "session lease: end revoked", setup: revokedSession, cmd: cmdEndRevoked("a", 4), want: resOK(), events: []Event{endedA}, check: gone("a")},
		{name: "session lease: never expired by ExpireLease", setup: revokedSession, cmd: cmdExpireLease("a", 4, 4), want: res(fsmpb.Code_CODE_NOT_HELD), unchanged: true},
		{name: "refresh: not held", setup: revokedTTL, cmd: cmdRefresh(s1, 2, "t", 4), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
		{name: "session lease refresh: not held", setup: revokedSession, cmd: cmdRefresh(s1, 2, "a", 4), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
		{name: "adopt: not held", setup: revokedTTL, cmd: cmdAdopt(s2, 2, "t", 4), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
	})
}

func TestState_ApplyAdopt(t *testing.T) {
	ttl := withTTL(time.Second)
	adopted := func(token, claim, gen uint64) *fsmpb.Result {
		return &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: token, Claim: claim, Generation: gen, TtlNs: int64(time.Second)}
	}
	runApplyCases(t, []applyCase{
		{
			name:  "TTL lease of an expired session: moved to the adopter and refreshed",
			setup: opens2(2, withStamp(cmdAcquire(s1, 1, "t", ttl, withOwner("o")), 100), cmdExpireSession(s1)), // 4, 5
			cmd:   withStamp(cmdAdopt(s2, 1, "t", 4), 600),                                                      // 6
			want:  adopted(4, 4, 6),
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 4, Generation: 6, TTL: time.Second, Previous: s1},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, LockInfo{
					Name: "t", Held: true, Token: 4, Generation: 6, Claim: 4, Session: s2, Node: "n2", Owner: "o",
					TTL: time.Second, RefreshedUnixNano: 600, GrantedUnixNano: 100,
				}, s.Lock("t"))
				// The adopter's session now ends it.
				_, events := applyOK(t, s, 7, cmdClose(s2, 2))
				assert.Equal(t, []Event{
					{Kind: EventEnded, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 4, Generation: 6, TTL: time.Second, Reason: ReasonClosed},
					{Kind: EventSessionEnded, Session: s2, TTL: sessTTL, Reason: ReasonClosed},
				}, events)
			},
		},
		{
			name:  "TTL lease of a live session: its names move",
			setup: opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdAcquire(s1, 2, "a")), // 4, 5
			cmd:   cmdAdopt(s2, 1, "t", 4),                                        // 6
			want:  adopted(4, 4, 6),
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 4, Generation: 6, TTL: time.Second, Previous: s1},
			},
			check: func(t *testing.T, s *State) {
				// Closing the previous session ends only what it still holds.
				_, events := applyOK(t, s, 7, cmdClose(s1, 3))
				assert.Equal(t, []Event{
					{Kind: EventEnded, Name: "a", Session: s1, Seq: 2, Claim: 5, Token: 5, Generation: 5, Reason: ReasonClosed},
					{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed},
				}, events)
				assert.Equal(t, uint64(s2), s.Lock("t").Session)
			},
		},
		{
			name:   "re-opening the previous session does not take the lease back",
			setup:  opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdExpireSession(s1), cmdAdopt(s2, 1, "t", 4)), // 4, 5, 6
			cmd:    cmdOpen(s1, sessTTL, "n1"),                                                            // 7
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: s1, TTL: sessTTL}},
			check: func(t *testing.T, s *State) {
				_, events := applyOK(t, s, 8, cmdClose(s1, 1))
				assert.Equal(t, []Event{{Kind: EventSessionEnded, Session: s1, TTL: sessTTL, Reason: ReasonClosed}}, events)
				assert.Equal(t, uint64(s2), s.Lock("t").Session)
			},
		},
		{
			name:  "the adopter also waits for the name: both counted",
			setup: opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdAcquire(s2, 1, "t")), // 4, 5 queued
			cmd:   cmdAdopt(s2, 2, "t", 4),                                        // 6
			want:  adopted(4, 4, 6),
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s2, Seq: 2, Claim: 4, Token: 4, Generation: 6, TTL: time.Second, Previous: s1},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, map[string]int{"t": 2}, s.sessions[s2].names)
				assert.Empty(t, s.sessions[s1].names)
			},
		},
		{
			name:  "its own lease: a refresh reported as an adoption",
			setup: opens2(1, cmdAcquire(s1, 1, "t", ttl)), // 3
			cmd:   cmdAdopt(s1, 2, "t", 3),                // 4
			want:  adopted(3, 3, 4),
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s1, Seq: 2, Claim: 3, Token: 3, Generation: 4, TTL: time.Second, Previous: s1},
			},
		},
		{
			name:      "an expiry of the generation before the adoption is stale",
			setup:     opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdAdopt(s2, 1, "t", 4)), // 4, 5
			cmd:       cmdExpireLease("t", 4, 4),
			want:      res(fsmpb.Code_CODE_NOT_HELD),
			unchanged: true,
		},
		{
			name:  "an expiry of the adoption's generation ends it",
			setup: opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdAdopt(s2, 1, "t", 4)), // 4, 5
			cmd:   cmdExpireLease("t", 4, 5),
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: s2, Seq: 1, Claim: 4, Token: 4, Generation: 5, TTL: time.Second, Reason: ReasonExpired},
			},
		},
		{
			name:           "session lease: not held",
			setup:          opens2(2, cmdAcquire(s1, 1, "a")),
			cmd:            cmdAdopt(s2, 1, "a", 4),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "wrong token",
			setup:          opens2(2, cmdAcquire(s1, 1, "t", ttl)),
			cmd:            cmdAdopt(s2, 1, "t", 3),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:           "unknown name",
			setup:          opens2(1),
			cmd:            cmdAdopt(s1, 1, "t", 2),
			want:           res(fsmpb.Code_CODE_NOT_HELD),
			locksUnchanged: true,
		},
		{
			name:      "unknown session",
			setup:     opens2(1, cmdAcquire(s1, 1, "t", ttl)),
			cmd:       cmdAdopt(s2, 1, "t", 3),
			want:      res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			unchanged: true,
		},
	})
}

// TestState_ApplyDuplicateV2: a retried Revoke or Adopt answers its first
// result from the cache, with no effect and no events.
func TestState_ApplyDuplicateV2(t *testing.T) {
	ttl := withTTL(time.Second)
	cases := []struct {
		name  string
		setup []*fsmpb.Command
		cmd   *fsmpb.Command
		want  *fsmpb.Result
	}{
		{"revoke", opens2(2, cmdAcquire(s1, 1, "a")), cmdRevoke(s2, 1, "a", 4), resToken(4)},
		{"revoke ending at once", opens2(2, cmdAcquire(s1, 1, "t", ttl), cmdExpireSession(s1)), cmdRevoke(s2, 1, "t", 4), resToken(4)},
		{"revoke not held", opens2(1), cmdRevoke(s1, 1, "a", 4), res(fsmpb.Code_CODE_NOT_HELD)},
		{"adopt", opens2(2, cmdAcquire(s1, 1, "t", ttl)), cmdAdopt(s2, 1, "t", 4), &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 4, Claim: 4, Generation: 5, TtlNs: int64(time.Second)}},
		{"adopt not held", opens2(2, cmdAcquire(s1, 1, "a")), cmdAdopt(s2, 1, "a", 4), res(fsmpb.Code_CODE_NOT_HELD)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustApply(t, tc.setup...)
			index := uint64(len(tc.setup) + 1)
			first, _ := applyOK(t, s, index, tc.cmd)
			assertResult(t, tc.want, first)
			before := mustSnapshot(t, s)
			second, events, err := s.Apply(index+1, withStamp(proto.Clone(tc.cmd).(*fsmpb.Command), 777))
			require.NoError(t, err)
			assertResult(t, first, second)
			assert.Nil(t, events)
			assert.Equal(t, before, mustSnapshot(t, s), "the retry changed state")
		})
	}
}

func TestState_Queue(t *testing.T) {
	s := mustApply(t, opens2(3,
		cmdAcquire(s1, 1, "a"), // 5
		withStamp(cmdAcquire(s2, 1, "a", withTTL(time.Second), withOwner("w2")), 700), // 6
		withStamp(cmdAcquire(s3, 1, "a", withOwner("w3")), 800),                       // 7
		cmdAcquire(s1, 2, "b"), // 8
	)...)
	all := []ClaimInfo{
		{Claim: 6, Session: s2, Node: "n2", Owner: "w2", TTL: time.Second, QueuedUnixNano: 700},
		{Claim: 7, Session: s3, Node: "n3", Owner: "w3", QueuedUnixNano: 800},
	}
	assert.Equal(t, all, s.Queue("a", 0))
	assert.Equal(t, all, s.Queue("a", -1))
	assert.Equal(t, all, s.Queue("a", 2))
	assert.Equal(t, all, s.Queue("a", 10))
	assert.Equal(t, all[:1], s.Queue("a", 1))
	assert.Empty(t, s.Queue("b", 10), "held, nobody waiting")
	assert.Empty(t, s.Queue("zzz", 10), "unknown name")
}

func TestState_List(t *testing.T) {
	names := []string{"b", "a/2", "ab", "é", "a", "a/1"}
	var cmds []*fsmpb.Command
	for i, n := range names {
		cmds = append(cmds, cmdAcquire(s1, uint64(i+1), n))
	}
	cmds = append(cmds, cmdAcquire(s2, 1, "a")) // a waiter does not list "a" twice
	s := mustApply(t, opens2(2, cmds...)...)
	list := func(prefix, after string, limit int) []string {
		var out []string
		for _, li := range s.List(prefix, after, limit) {
			assert.Equal(t, s.Lock(li.Name), li)
			out = append(out, li.Name)
		}
		return out
	}
	byteOrder := []string{"a", "a/1", "a/2", "ab", "b", "é"}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 0, byteOrder},
		{"", "", 100, byteOrder},
		{"", "", 2, byteOrder[:2]},
		{"", "a/1", 2, []string{"a/2", "ab"}},
		{"", "a", -1, byteOrder[1:]},
		{"a/", "", 0, []string{"a/1", "a/2"}},
		{"a", "", 0, []string{"a", "a/1", "a/2", "ab"}},
		{"a", "ab", 0, nil},
		{"", "é", 0, nil},
		{"x", "", 0, nil},
		{"é", "", 0, []string{"é"}},
	} {
		assert.Equal(t, tc.want, list(tc.prefix, tc.after, tc.limit), "List(%q, %q, %d)", tc.prefix, tc.after, tc.limit)
	}
}

func TestState_Revoked(t *testing.T) {
	s := mustApply(t,
		cmdOpen(s1, 3*time.Second, "n1"),             // 1
		cmdOpen(s2, 7*time.Second, "n2"),             // 2
		cmdSetProtocol(2),                            // 3
		cmdAcquire(s2, 1, "z"),                       // 4
		cmdAcquire(s1, 1, "m", withTTL(time.Second)), // 5
		cmdAcquire(s1, 2, "k"),                       // 6 not revoked
		cmdRevoke(s1, 3, "z", 4),                     // 7
		cmdRevoke(s2, 2, "m", 5),                     // 8
	)
	assert.Equal(t, []RevokedLease{
		{Name: "m", Token: 5, Session: s1, Grace: 3 * time.Second},
		{Name: "z", Token: 4, Session: s2, Grace: 7 * time.Second},
	}, s.Revoked())
	assert.Empty(t, New().Revoked())
}

func TestNeeds(t *testing.T) {
	for _, tc := range []struct {
		cmd  *fsmpb.Command
		want int
	}{
		{&fsmpb.Command{Ignorable: true}, 1},
		{cmdOpen(s1, sessTTL, "n"), 1},
		{cmdAcquire(s1, 1, "a"), 1},
		{cmdExpireLease("a", 1, 1), 1},
		{cmdRevoke(s1, 1, "a", 1), 2},
		{cmdEndRevoked("a", 1), 2},
		{cmdAdopt(s1, 1, "a", 1), 2},
		{cmdSetProtocol(2), 2},
		{cmdSetProtocol(3), 3},
		{cmdSetProtocol(1), 2},
		{cmdSetProtocol(math.MaxUint32), math.MaxInt32},
		{cmdOpenClient(c1, k(1), ""), 3},
		{cmdCloseClient(s1, 1, c1, k(1)), 3},
		{cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))), 3},
		{cmdAcquire(s1, 1, "a", withTTL(time.Second), withKey(k(2))), 3},
		{cmdReleaseKey(s1, 1, "a", 0, k(2)), 3},
		{cmdRefreshKey(s1, 1, "a", 0, k(2)), 3},
		{cmdAdoptKey(s1, 1, "a", 1, k(2)), 3},
	} {
		assert.Equal(t, tc.want, Needs(tc.cmd), "%v", tc.cmd)
	}
}

// TestState_TokenUseAfterAdopt: at level 2 only the holder's live session
// may release or refresh a lease by its token, so the previous holder of an
// adopted lease (which names the same token) cannot end the adopter's
// lease with a late Release; a lease whose session is gone stays anyone's
// by token, and at level 1 tokens stay capabilities.
func TestState_TokenUseAfterAdopt(t *testing.T) {
	const s1, s2, s3 = 11, 12, 13
	ttl := withTTL(time.Minute)
	apply := func(s *State, index uint64, cmd *fsmpb.Command) *fsmpb.Result {
		t.Helper()
		r, _, err := s.Apply(index, cmd)
		require.NoError(t, err)
		return r
	}
	open3 := []*fsmpb.Command{cmdOpen(s1, time.Second, "a"), cmdOpen(s2, time.Second, "b"), cmdOpen(s3, time.Second, "c")}

	// Level 2: s1's lease (token 5) adopted by s2.
	s := mustApply(t, append([]*fsmpb.Command{cmdSetProtocol(2)}, append(open3, cmdAcquire(s1, 1, "t", ttl), cmdAdopt(s2, 1, "t", 5))...)...)
	require.Equal(t, uint64(s2), s.Lock("t").Session)
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, apply(s, 7, cmdRelease(s1, 2, "t", 5)).GetCode(), "the previous holder's Release")
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, apply(s, 8, cmdRefresh(s1, 3, "t", 5)).GetCode(), "the previous holder's Refresh")
	assert.Equal(t, fsmpb.Code_CODE_NOT_HELD, apply(s, 9, cmdRelease(s3, 1, "t", 5)).GetCode(), "a third session's Release")
	require.True(t, s.Lock("t").Held, "the adopter still holds the lease")
	assert.Equal(t, fsmpb.Code_CODE_OK, apply(s, 10, cmdRefresh(s2, 2, "t", 5)).GetCode(), "the adopter's Refresh")
	assert.Equal(t, fsmpb.Code_CODE_OK, apply(s, 11, cmdRelease(s2, 3, "t", 5)).GetCode(), "the adopter's Release")
	require.NoError(t, checkInvariants(s))

	// Level 2, the holder's session gone: anyone may release by token.
	s = mustApply(t, append([]*fsmpb.Command{cmdSetProtocol(2)}, append(open3, cmdAcquire(s1, 1, "t", ttl), cmdExpireSession(s1))...)...)
	assert.Equal(t, fsmpb.Code_CODE_OK, apply(s, 7, cmdRelease(s3, 1, "t", 5)).GetCode(), "a TTL lease whose session expired")

	// Level 1: tokens are capabilities.
	s = mustApply(t, append(open3, cmdAcquire(s1, 1, "t", ttl))...)
	assert.Equal(t, fsmpb.Code_CODE_OK, apply(s, 5, cmdRelease(s3, 1, "t", 4)).GetCode(), "level 1: another session's Release")
}
