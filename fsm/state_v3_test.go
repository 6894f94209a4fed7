package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Protocol 3 (DESIGN.md, "Protocol 3"): client sessions, streams, one
// claim per client session and name, lease keys.

// c1 and c2 are client sessions; s1, s2 (node sessions) are their
// proposers' streams.
const c1, c2 uint64 = 101, 102

// k is a 16-byte secret or key filled with b.
func k(b byte) []byte { return bytes.Repeat([]byte{b}, KeyLen) }

// opens3 opens sessions 1..n and raises the level to 3 (index n+1).
func opens3(n int, more ...*fsmpb.Command) []*fsmpb.Command {
	return append(opens(n, cmdSetProtocol(3)), more...)
}

func cmdOpenClient(id uint64, secret []byte, owner string) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: rq(id, 0), TtlNs: int64(sessTTL), Node: "n1", Secret: secret, Owner: owner,
	}}}
}

func cmdCloseClient(session, seq, id uint64, secret []byte) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
		Req: rq(session, seq), ForSession: id, Secret: secret,
	}}}
}

func forClient(id uint64, secret, key []byte) acqOpt {
	return func(a *fsmpb.Acquire) { a.ForSession, a.Secret, a.Key = id, secret, key }
}

func withKey(key []byte) acqOpt { return func(a *fsmpb.Acquire) { a.Key = key } }

func cmdReleaseKey(session, seq uint64, name string, token uint64, key []byte) *fsmpb.Command {
	c := cmdRelease(session, seq, name, token)
	c.GetRelease().Key = key
	return c
}

func cmdRefreshKey(session, seq uint64, name string, token uint64, key []byte) *fsmpb.Command {
	c := cmdRefresh(session, seq, name, token)
	c.GetRefresh().Key = key
	return c
}

func cmdAdoptKey(session, seq uint64, name string, token uint64, key []byte) *fsmpb.Command {
	c := cmdAdopt(session, seq, name, token)
	c.GetAdopt().Key = key
	return c
}

func resKeyed(c fsmpb.Code, token, claim uint64, key []byte) *fsmpb.Result {
	return &fsmpb.Result{Code: c, Token: token, Claim: claim, Key: key}
}

func TestState_ApplyBelowLevel3(t *testing.T) {
	var cases []applyCase
	for _, tc := range []struct {
		name string
		cmd  *fsmpb.Command
	}{
		{"open a client session", cmdOpenClient(c1, k(1), "")},
		{"open with an owner", cmdOpenClient(c1, nil, "web")},
		{"acquire for a client session", cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2)))},
		{"acquire with a key", cmdAcquire(s1, 1, "a", withTTL(time.Second), withKey(k(2)))},
		{"release by key", cmdReleaseKey(s1, 1, "a", 0, k(2))},
		{"refresh by key", cmdRefreshKey(s1, 1, "a", 0, k(2))},
		{"close a client session", cmdCloseClient(s1, 1, c1, k(1))},
		{"adopt with a key", cmdAdoptKey(s1, 1, "a", 3, k(2))},
	} {
		cases = append(cases, applyCase{
			name: tc.name, setup: opens2(1), cmd: tc.cmd, want: res(fsmpb.Code_CODE_UNSUPPORTED), unchanged: true,
		})
	}
	runApplyCases(t, cases)
}

func TestState_ApplyClientSession(t *testing.T) {
	runApplyCases(t, []applyCase{
		{
			name:   "open",
			setup:  opens3(1),
			cmd:    cmdOpenClient(c1, k(1), "web-7"), // 3
			want:   resOK(),
			events: []Event{{Kind: EventSessionOpened, Session: c1, TTL: sessTTL}},
			check: func(t *testing.T, s *State) {
				snap := decodeSnapshot(t, s)
				require.Len(t, snap.GetSessions(), 2)
				got := snap.GetSessions()[1]
				assert.Equal(t, k(1), got.GetSecret())
				assert.Equal(t, "web-7", got.GetOwner())
			},
		},
		{
			name:  "open again with the same secret: no-op",
			setup: opens3(1, cmdOpenClient(c1, k(1), "web-7")),
			cmd:   cmdOpenClient(c1, k(1), "web-7"),
			want:  resOK(), unchanged: true,
		},
		{
			name:  "an ID taken by another secret",
			setup: opens3(1, cmdOpenClient(c1, k(1), "")),
			cmd:   cmdOpenClient(c1, k(9), ""),
			want:  res(fsmpb.Code_CODE_HELD), unchanged: true,
		},
		{
			name:  "an ID taken by a node session",
			setup: opens3(1),
			cmd:   cmdOpenClient(s1, k(1), ""),
			want:  res(fsmpb.Code_CODE_HELD), unchanged: true,
		},
		{
			name:  "a secret of the wrong length",
			setup: opens3(1),
			cmd:   cmdOpenClient(c1, []byte("short"), ""),
			want:  res(fsmpb.Code_CODE_INVALID), unchanged: true,
		},
		{
			name:  "close by secret, from another node's stream",
			setup: opens3(2, cmdOpenClient(c1, k(1), ""), cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2)))), // 4, 5
			cmd:   cmdCloseClient(s2, 1, c1, k(1)),                                                           // 6
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: c1, Seq: 1, Claim: 5, Token: 5, Generation: 5, Reason: ReasonClosed, Stream: s1},
				{Kind: EventSessionEnded, Session: c1, TTL: sessTTL, Reason: ReasonClosed},
			},
			check: func(t *testing.T, s *State) {
				assert.False(t, s.HasSession(c1))
				assert.True(t, s.HasSession(s2), "the stream stays")
				assert.Equal(t, []uint64{1}, cachedSeqs(s, s2), "the result is cached in the stream")
			},
		},
		{
			name:           "close with a wrong secret",
			setup:          opens3(2, cmdOpenClient(c1, k(1), "")),
			cmd:            cmdCloseClient(s2, 1, c1, k(9)),
			want:           res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			locksUnchanged: true,
			check:          func(t *testing.T, s *State) { assert.True(t, s.HasSession(c1)) },
		},
		{
			name:  "expiry ends its session lease, keeps its keyed TTL lease",
			setup: opens3(1, cmdOpenClient(c1, k(1), ""), cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(2))), cmdAcquire(s1, 2, "t", withTTL(time.Second), forClient(c1, k(1), k(3)))), // 3, 4, 5
			cmd:   cmdExpireSession(c1),                                                                                                                                               // 6
			want:  resOK(),
			events: []Event{
				{Kind: EventEnded, Name: "a", Session: c1, Seq: 1, Claim: 4, Token: 4, Generation: 4, Reason: ReasonLost, Stream: s1},
				{Kind: EventSessionEnded, Session: c1, TTL: sessTTL, Reason: ReasonLost},
			},
			check: func(t *testing.T, s *State) {
				r, _ := applyOK(t, s, 7, cmdReleaseKey(s1, 3, "t", 0, k(3)))
				assertResult(t, resToken(5), r)
			},
		},
	})
}

func TestState_ApplyAcquireForClient(t *testing.T) {
	held := func(key byte) []*fsmpb.Command { // c1 holds "a" (4), its key k(key)
		return opens3(2, cmdOpenClient(c1, k(1), ""), cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(key))))
	}
	runApplyCases(t, []applyCase{
		{
			name:  "free: granted to the client session, routed by the stream",
			setup: opens3(1, cmdOpenClient(c1, k(1), "")), // 3
			cmd:   cmdAcquire(s1, 7, "a", withOwner("o"), forClient(c1, k(1), k(2))),
			want:  resKeyed(fsmpb.Code_CODE_GRANTED, 4, 4, k(2)),
			events: []Event{
				{Kind: EventGranted, Name: "a", Session: c1, Seq: 7, Claim: 4, Token: 4, Generation: 4, Stream: s1},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, c1, s.Lock("a").Session)
				assert.Equal(t, "o", s.Lock("a").Owner)
			},
		},
		{
			name:  "wrong secret",
			setup: opens3(1, cmdOpenClient(c1, k(1), "")),
			cmd:   cmdAcquire(s1, 1, "a", forClient(c1, k(9), k(2))),
			want:  res(fsmpb.Code_CODE_UNKNOWN_SESSION), locksUnchanged: true,
		},
		{
			name:  "a node session named as a client",
			setup: opens3(2),
			cmd:   cmdAcquire(s1, 1, "a", forClient(s2, k(1), k(2))),
			want:  res(fsmpb.Code_CODE_UNKNOWN_SESSION), locksUnchanged: true,
		},
		{
			name:  "no key",
			setup: opens3(1, cmdOpenClient(c1, k(1), "")),
			cmd:   cmdAcquire(s1, 1, "a", forClient(c1, k(1), nil)),
			want:  res(fsmpb.Code_CODE_INVALID), locksUnchanged: true,
		},
		{
			name:  "held: re-attached from another stream, same lease",
			setup: held(2),                                           // c1 holds "a" at 5
			cmd:   cmdAcquire(s2, 4, "a", forClient(c1, k(1), k(7))), // 6; its key is not taken
			want:  resKeyed(fsmpb.Code_CODE_GRANTED, 5, 6, k(2)),     // the claim's new ID
			events: []Event{
				{Kind: EventMoved, Name: "a", Session: c1, Seq: 1, Claim: 5, Token: 5, Stream: s1},
			},
			check: func(t *testing.T, s *State) {
				_, ev := applyOK(t, s, 7, cmdReleaseKey(s1, 2, "a", 0, k(2)))
				require.Len(t, ev, 1)
				assert.Equal(t, uint64(s2), ev[0].Stream, "events follow the re-attaching stream")
				assert.Equal(t, uint64(4), ev[0].Seq)
			},
		},
		{
			name:  "queued: re-attached, one claim",
			setup: opens3(2, cmdOpenClient(c1, k(1), ""), cmdAcquire(s1, 1, "a"), cmdAcquire(s1, 2, "a", forClient(c1, k(1), k(2)))), // 4, 5, 6
			cmd:   cmdAcquire(s2, 1, "a", forClient(c1, k(1), k(3))),                                                                 // 7
			want:  resKeyed(fsmpb.Code_CODE_QUEUED, 0, 7, k(2)),
			events: []Event{
				{Kind: EventMoved, Name: "a", Session: c1, Seq: 2, Claim: 6, Stream: s1},
			},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, []uint64{7}, queueOf(s, "a"))
				_, ev := applyOK(t, s, 8, cmdRelease(s1, 3, "a", 5))
				require.Len(t, ev, 2)
				assert.Equal(t, Event{Kind: EventGranted, Name: "a", Session: c1, Seq: 1, Claim: 7, Token: 8, Generation: 8, Stream: s2}, ev[1])
			},
		},
		{
			name: "held by its own revoked lease",
			setup: append(held(2),
				cmdRevoke(s2, 1, "a", 5), // 6
			),
			cmd:            cmdAcquire(s2, 2, "a", forClient(c1, k(1), k(3))),
			want:           res(fsmpb.Code_CODE_HELD),
			locksUnchanged: true,
		},
		{
			name:  "keyed TTL lease of a node session",
			setup: opens3(1),
			cmd:   cmdAcquire(s1, 1, "t", withTTL(time.Second), withKey(k(5))), // 3
			want:  resKeyed(fsmpb.Code_CODE_GRANTED, 3, 3, k(5)),
			events: []Event{
				{Kind: EventGranted, Name: "t", Session: s1, Seq: 1, Claim: 3, Token: 3, Generation: 3, TTL: time.Second},
			},
		},
	})
}

func TestState_ApplyByKey(t *testing.T) {
	ttlHeld := opens3(2, cmdOpenClient(c1, k(1), ""), cmdAcquire(s1, 1, "t", withTTL(time.Second), forClient(c1, k(1), k(2)))) // 4, 5
	runApplyCases(t, []applyCase{
		{
			name:  "release by key from any stream",
			setup: ttlHeld,
			cmd:   cmdReleaseKey(s2, 1, "t", 0, k(2)),
			want:  resToken(5),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: c1, Seq: 1, Claim: 5, Token: 5, Generation: 5, TTL: time.Second, Reason: ReasonReleased, Stream: s1},
			},
		},
		{
			name:  "release by key and token",
			setup: ttlHeld,
			cmd:   cmdReleaseKey(s2, 1, "t", 5, k(2)),
			want:  resToken(5),
			events: []Event{
				{Kind: EventEnded, Name: "t", Session: c1, Seq: 1, Claim: 5, Token: 5, Generation: 5, TTL: time.Second, Reason: ReasonReleased, Stream: s1},
			},
		},
		{name: "wrong key", setup: ttlHeld, cmd: cmdReleaseKey(s2, 1, "t", 0, k(9)), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
		{name: "right key, wrong token", setup: ttlHeld, cmd: cmdReleaseKey(s2, 1, "t", 4, k(2)), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
		{
			name: "token alone, from the stream: not the holder's session", setup: ttlHeld,
			cmd: cmdRelease(s1, 2, "t", 5), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true,
		},
		{
			name:  "refresh by key",
			setup: ttlHeld,
			cmd:   cmdRefreshKey(s2, 1, "t", 0, k(2)), // 6
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 5, TtlNs: int64(time.Second)},
			events: []Event{
				{Kind: EventRefreshed, Name: "t", Session: c1, Seq: 1, Claim: 5, Token: 5, Generation: 6, TTL: time.Second, Stream: s1},
			},
		},
		{name: "refresh, wrong key", setup: ttlHeld, cmd: cmdRefreshKey(s2, 1, "t", 0, k(9)), want: res(fsmpb.Code_CODE_NOT_HELD), locksUnchanged: true},
		{
			name:  "adopt replaces the key",
			setup: ttlHeld,
			cmd:   cmdAdoptKey(s2, 1, "t", 5, k(8)),                                                                      // 6
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 5, Claim: 6, Generation: 6, TtlNs: int64(time.Second)}, // level 3: the claim takes the Adopt's index
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s2, Seq: 1, Claim: 6, Token: 5, Generation: 6, TTL: time.Second, Previous: c1},
			},
			check: func(t *testing.T, s *State) {
				r, _ := applyOK(t, s, 7, cmdReleaseKey(s1, 2, "t", 0, k(2)))
				assertResult(t, res(fsmpb.Code_CODE_NOT_HELD), r)
				r, _ = applyOK(t, s, 8, cmdReleaseKey(s1, 3, "t", 0, k(8)))
				assertResult(t, resToken(5), r)
			},
		},
		{
			name:  "adopt without a key drops it",
			setup: ttlHeld,
			cmd:   cmdAdopt(s2, 1, "t", 5),
			want:  &fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 5, Claim: 6, Generation: 6, TtlNs: int64(time.Second)}, // level 3: the claim takes the Adopt's index
			events: []Event{
				{Kind: EventAdopted, Name: "t", Session: s2, Seq: 1, Claim: 6, Token: 5, Generation: 6, TTL: time.Second, Previous: c1},
			},
			check: func(t *testing.T, s *State) {
				r, _ := applyOK(t, s, 7, cmdReleaseKey(s1, 2, "t", 0, k(2)))
				assertResult(t, res(fsmpb.Code_CODE_NOT_HELD), r)
			},
		},
	})
}

// TestRestore_V3 round-trips a level-3 state and breaks one rule of
// level 3 at a time.
func TestRestore_V3(t *testing.T) {
	base := func() *fsmpb.Snapshot {
		s := mustApply(t, opens3(2,
			cmdOpenClient(c1, k(1), "web"),                              // 4
			cmdAcquire(s1, 1, "a"),                                      // 5
			cmdAcquire(s2, 1, "a", forClient(c1, k(1), k(2))),           // 6 queued
			cmdAcquire(s1, 2, "t", withTTL(time.Second), withKey(k(3))), // 7
		)...)
		return decodeSnapshot(t, s)
	}
	lockA := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[0] }
	lockT := func(p *fsmpb.Snapshot) *fsmpb.Lock { return p.Locks[1] }
	client := func(p *fsmpb.Snapshot) *fsmpb.Session { return p.Sessions[2] }
	for _, tc := range []struct {
		name    string
		mutate  func(p *fsmpb.Snapshot)
		wantErr error
	}{
		{"unchanged", func(*fsmpb.Snapshot) {}, nil},
		{"level 2 with a secret", func(p *fsmpb.Snapshot) { p.Protocol = 2; lockA(p).Queue = nil; lockT(p).Holder.Claim.Key = nil }, ErrCorrupt},
		{"level 2 with a key", func(p *fsmpb.Snapshot) {
			p.Protocol = 2
			p.Sessions = p.Sessions[:2]
			lockA(p).Queue = nil
		}, ErrCorrupt},
		{"a short secret", func(p *fsmpb.Snapshot) { client(p).Secret = []byte("x") }, ErrCorrupt},
		{"an owner without a secret", func(p *fsmpb.Snapshot) { client(p).Secret = nil }, ErrCorrupt},
		{"a short key", func(p *fsmpb.Snapshot) { lockT(p).Holder.Claim.Key = []byte("x") }, ErrCorrupt},
		{"a claim that is its own stream", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].Stream = c1 }, ErrCorrupt},
		{"a live client session's claim without a stream", func(p *fsmpb.Snapshot) { lockA(p).Queue[0].Stream = 0 }, ErrCorrupt},
		{"a node session's claim with a stream", func(p *fsmpb.Snapshot) { lockA(p).Holder.Claim.Stream = s2 }, ErrCorrupt},
		{"a cached key of 1 byte", func(p *fsmpb.Snapshot) {
			for _, r := range p.Sessions[1].Results { // s2's: its Acquire for c1 answered the key
				r.Result.Key = []byte("x")
			}
		}, ErrCorrupt},
		{"two claims of one client session", func(p *fsmpb.Snapshot) {
			second := proto.Clone(lockA(p).Queue[0]).(*fsmpb.Claim)
			second.Id = 99
			lockA(p).Queue = append(lockA(p).Queue, second)
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
			require.NoError(t, err)
			s, err := Restore(data)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.NoError(t, checkInvariants(s))
				assert.Equal(t, data, mustSnapshot(t, s))
				return
			}
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Nil(t, s)
		})
	}
}

func TestState_ClientSessionQuery(t *testing.T) {
	s := mustApply(t, opens3(1, cmdOpenClient(c1, k(1), "web"))...)
	assert.True(t, s.Renewable(c1, k(1)))
	assert.False(t, s.Renewable(c1, k(2)), "wrong secret")
	assert.False(t, s.Renewable(c1, nil), "no secret")
	assert.True(t, s.Renewable(s1, nil), "a node's session")
	assert.False(t, s.Renewable(s1, k(1)), "a node's session has no secret")
	assert.False(t, s.Renewable(c2, k(1)), "unknown")
	assert.Equal(t, []SessionInfo{
		{ID: s1, TTL: sessTTL, Node: "n1"},
		{ID: c1, TTL: sessTTL, Node: "n1", Client: true, Owner: "web"},
	}, s.Sessions())
}

func TestState_RoutedClaim(t *testing.T) {
	s := mustApply(t, opens3(2, cmdOpenClient(c1, k(1), ""), cmdOpenClient(c2, k(2), ""), // 4, 5
		cmdAcquire(s1, 1, "a", forClient(c1, k(1), k(3))), // 6 granted
		cmdAcquire(s1, 2, "a", forClient(c2, k(2), k(4))), // 7 queued
		cmdAcquire(s2, 1, "a"))...)                        // 8 queued, a node's own
	assert.Equal(t, uint64(6), s.RoutedClaim("a", s1, 1))
	assert.Equal(t, uint64(7), s.RoutedClaim("a", s1, 2))
	assert.Equal(t, uint64(8), s.RoutedClaim("a", s2, 1), "a node session's own claim, by its session")
	assert.Zero(t, s.RoutedClaim("a", 0, 1))
	assert.Zero(t, s.RoutedClaim("b", s1, 1))
	applyOK(t, s, 9, cmdAcquire(s2, 2, "a", forClient(c2, k(2), k(5)))) // re-attach
	assert.Zero(t, s.RoutedClaim("a", s1, 2), "moved away")
	assert.Equal(t, uint64(9), s.RoutedClaim("a", s2, 2))
}

func TestState_SessionQuery(t *testing.T) {
	s := mustApply(t, opens3(1, cmdOpenClient(c1, k(1), "web"))...)
	info, ok := s.Session(c1)
	assert.True(t, ok)
	assert.Equal(t, SessionInfo{ID: c1, TTL: sessTTL, Node: "n1", Client: true, Owner: "web"}, info)
	info, ok = s.Session(s1)
	assert.True(t, ok)
	assert.False(t, info.Client)
	_, ok = s.Session(c2)
	assert.False(t, ok)
}
