package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Protocol 4 (DESIGN.md, "Protocol 4"): one token floor for the store.

// opens4 opens sessions 1..n and raises the level to 4 (index n+1); more
// start at index n+2.
func opens4(n int, more ...*fsmpb.Command) []*fsmpb.Command {
	return append(opens(n, cmdSetProtocol(4)), more...)
}

func cmdFloor(session, seq uint64, name string, floor uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{Req: rq(session, seq), Name: name, Floor: floor}}}
}

// tokenFloorOf is the store-wide token floor of s, 0 for none.
func tokenFloorOf(s *State) uint64 { return s.tokenFloor }

// granted is the Granted event of a claim of session granted token at
// index (its generation).
func granted(name string, session, seq, claim, token, index uint64) Event {
	return Event{Kind: EventGranted, Name: name, Session: session, Seq: seq, Claim: claim, Token: token, Generation: index}
}

func TestState_ApplyFloorToken(t *testing.T) {
	// opens4(2): sessions at 1 and 2, level 4 at 3; more from index 4.
	runApplyCases(t, []applyCase{
		{
			name:   "a floor then a grant: token floor+1, generation the index",
			setup:  opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:    cmdAcquire(s2, 1, "x"),
			want:   resGranted(101, 5),
			events: []Event{granted("x", s2, 1, 5, 101, 5)},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, uint64(101), tokenFloorOf(s), "the used floor becomes the token")
				li := s.Lock("x")
				assert.Equal(t, uint64(101), li.Token)
				assert.Equal(t, uint64(5), li.Generation)
			},
		},
		{
			name:   "the next grant gets floor+2 though its index is smaller",
			setup:  opens4(2, cmdFloor(s1, 1, "x", 100), cmdAcquire(s2, 1, "x"), cmdRelease(s2, 2, "x", 101)),
			cmd:    cmdAcquire(s1, 2, "x"),
			want:   resGranted(102, 7),
			events: []Event{granted("x", s1, 2, 7, 102, 7)},
			check:  func(t *testing.T, s *State) { assert.Equal(t, uint64(102), tokenFloorOf(s)) },
		},
		{
			name:   "a floor raises the grants of every name",
			setup:  opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:    cmdAcquire(s2, 1, "y"),
			want:   resGranted(101, 5),
			events: []Event{granted("y", s2, 1, 5, 101, 5)},
			check: func(t *testing.T, s *State) {
				assert.Equal(t, uint64(101), tokenFloorOf(s))
				res, _ := applyOK(t, s, 6, cmdAcquire(s1, 2, "x"))
				assertResult(t, resGranted(102, 6), res) // the floored name's own grant comes after
			},
		},
		{
			name:           "FloorToken is OK and stores its floor",
			setup:          opens4(2),
			cmd:            cmdFloor(s1, 1, "x", 100),
			want:           resOK(),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Equal(t, uint64(100), tokenFloorOf(s))
				assert.False(t, s.Lock("x").Held, "a floor holds nothing")
			},
		},
		{
			name:           "a floor below the index is a no-op leaving no floor",
			setup:          opens4(2),
			cmd:            cmdFloor(s1, 1, "x", 3),
			want:           resOK(),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Zero(t, tokenFloorOf(s))
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "x"))
				assertResult(t, resGranted(5, 5), res)
			},
		},
		{
			name:  "a floor equal to the index is a no-op too",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "x", 4),
			want:  resOK(),
			check: func(t *testing.T, s *State) { assert.Zero(t, tokenFloorOf(s)) },
		},
		{
			name:  "a lower floor never lowers one, whatever its name",
			setup: opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:   cmdFloor(s1, 2, "y", 50),
			want:  resOK(),
			check: func(t *testing.T, s *State) { assert.Equal(t, uint64(100), tokenFloorOf(s)) },
		},
		{
			name:  "a higher floor of another name raises it",
			setup: opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:   cmdFloor(s1, 2, "y", 200),
			want:  resOK(),
			check: func(t *testing.T, s *State) {
				assert.Equal(t, uint64(200), tokenFloorOf(s))
				res, _ := applyOK(t, s, 6, cmdAcquire(s2, 1, "x"))
				assertResult(t, resGranted(201, 6), res)
			},
		},
		{
			name:           "a floor leaves the current lease and queue alone",
			setup:          opens4(2, cmdAcquire(s1, 1, "x"), cmdAcquire(s2, 1, "x")),
			cmd:            cmdFloor(s1, 2, "x", 100),
			want:           resOK(),
			locksUnchanged: true,
		},
		{
			name:      "a retry answers from the cache",
			setup:     opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:       cmdFloor(s1, 1, "x", 100),
			want:      resOK(),
			unchanged: true,
		},
		{
			name:  "above MaxTokenFloor: INVALID",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "x", MaxTokenFloor+1),
			want:  res(fsmpb.Code_CODE_INVALID),
			check: func(t *testing.T, s *State) { assert.Zero(t, tokenFloorOf(s)) },
		},
		{
			name:  "MaxTokenFloor itself is accepted",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "x", MaxTokenFloor),
			want:  resOK(),
			check: func(t *testing.T, s *State) {
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "y"))
				assertResult(t, resGranted(MaxTokenFloor+1, 5), res)
			},
		},
		{
			name:  "a bad name: INVALID, and no floor",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "bad\x00", 100),
			want:  res(fsmpb.Code_CODE_INVALID),
			check: func(t *testing.T, s *State) { assert.Zero(t, tokenFloorOf(s)) },
		},
		{
			name:  "an unknown session",
			setup: opens4(2),
			cmd:   cmdFloor(9, 1, "x", 100),
			want:  res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			check: func(t *testing.T, s *State) { assert.Zero(t, tokenFloorOf(s)) },
		},
		{
			name:      "level 3: UNSUPPORTED, nothing changes, not even the cache",
			setup:     opens3(2),
			cmd:       cmdFloor(s1, 1, "x", 100),
			want:      res(fsmpb.Code_CODE_UNSUPPORTED),
			unchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Zero(t, tokenFloorOf(s))
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "y"))
				assertResult(t, resGranted(5, 5), res)
			},
		},
	})
}

// TestState_FloorChainsAcrossNames: while the floor is in use, grants of
// different names take the tokens above it one after the other, within
// one entry too (the end of a session hands over several names).
func TestState_FloorChainsAcrossNames(t *testing.T) {
	s := mustApply(t, opens4(3,
		cmdAcquire(s1, 1, "a"), // 5
		cmdAcquire(s1, 2, "b"), // 6
		cmdAcquire(s2, 1, "a"), // 7: queued
		cmdAcquire(s3, 1, "b"), // 8: queued
		cmdFloor(s3, 2, "z", 100),
	)...)
	_, ev := applyOK(t, s, 10, cmdClose(s1, 3)) // hands a to s2, b to s3
	var got []Event
	for _, e := range ev {
		if e.Kind == EventGranted {
			got = append(got, e)
		}
	}
	assert.Equal(t, []Event{granted("a", s2, 1, 7, 101, 10), granted("b", s3, 1, 8, 102, 10)}, got)
	assert.Equal(t, uint64(102), tokenFloorOf(s))
	res, _ := applyOK(t, s, 11, cmdAcquire(s2, 2, "c"))
	assertResult(t, resGranted(103, 11), res)
	res, _ = applyOK(t, s, 12, cmdRelease(s2, 3, "a", 101))
	assertResult(t, resOK(), res)
	res, _ = applyOK(t, s, 13, cmdAcquire(s3, 3, "a"))
	assertResult(t, resGranted(104, 13), res)
	requireInvariants(t, s)
}

// TestState_FloorDroppedOnceIndexPasses: the floor stays while a later
// grant could use it, counts for a grant at its own index, and is gone
// once the index has passed it (at the end of an entry that is not
// ignorable: those change nothing at all).
func TestState_FloorDroppedOnceIndexPasses(t *testing.T) {
	// Entries that grant nothing, to move the index: sessions 10, 11, ...
	filler := func(i uint64) *fsmpb.Command { return cmdOpen(i+10, sessTTL, "n") }
	s := mustApply(t, opens4(2, cmdFloor(s1, 1, "x", 10))...) // floor at index 4
	for i := uint64(5); i < 10; i++ {
		applyOK(t, s, i, filler(i))
	}
	applyOK(t, s, 10, &fsmpb.Command{Ignorable: true})
	applyOK(t, s, 11, &fsmpb.Command{Ignorable: true})
	assert.Equal(t, uint64(10), tokenFloorOf(s), "ignorable entries change nothing")
	s = mustApply(t, opens4(2, cmdFloor(s1, 1, "x", 10))...)
	for i := uint64(5); i < 10; i++ {
		applyOK(t, s, i, filler(i))
	}
	assert.Equal(t, uint64(10), tokenFloorOf(s), "index 9: a grant at 10 still needs it")
	twin, err := Restore(mustSnapshot(t, s))
	require.NoError(t, err)

	res, ev := applyOK(t, s, 10, cmdAcquire(s2, 1, "y"))
	assertResult(t, resGranted(11, 10), res)
	assert.Equal(t, []Event{granted("y", s2, 1, 10, 11, 10)}, ev)
	assert.Equal(t, uint64(11), tokenFloorOf(s))
	applyOK(t, s, 11, filler(11))
	assert.Zero(t, tokenFloorOf(s), "index 11 passed the floor 11")
	res, _ = applyOK(t, s, 12, cmdAcquire(s2, 2, "x"))
	assertResult(t, resGranted(12, 12), res)

	applyOK(t, twin, 10, filler(10))
	assert.Zero(t, tokenFloorOf(twin), "index 10 passed the floor 10")
	res, _ = applyOK(t, twin, 11, cmdAcquire(s2, 1, "x"))
	assertResult(t, resGranted(11, 11), res)
}

// TestState_FloorOnHandOff: every way a lease ends hands the name over
// with a token above the floor.
func TestState_FloorOnHandOff(t *testing.T) {
	// s1 holds x (token 4, TTL), s2 waits (claim 5), floor 100 at 6; the
	// end at 7 grants s2 token 101.
	setup := opens4(2,
		cmdAcquire(s1, 1, "x", withTTL(time.Second)),
		cmdAcquire(s2, 1, "x"),
		cmdFloor(s1, 2, "x", 100),
	)
	for _, c := range []struct {
		what string
		cmd  *fsmpb.Command
	}{
		{"release", cmdRelease(s1, 3, "x", 4)},
		{"cancel", cmdCancel(s1, 3, "x", 4)},
		{"expire lease", cmdExpireLease("x", 4, 4)},
		{"close session", cmdClose(s1, 3)},
		{"revoke of a lease whose session is gone", nil},
	} {
		t.Run(c.what, func(t *testing.T) {
			cmds := setup
			if c.cmd == nil {
				// s1's TTL lease outlives its session; a revoke ends it now.
				cmds = append(append([]*fsmpb.Command(nil), setup...), cmdExpireSession(s1))
				c.cmd = cmdRevoke(s2, 2, "x", 4)
			}
			s := mustApply(t, cmds...)
			index := uint64(len(cmds) + 1)
			_, ev := applyOK(t, s, index, c.cmd)
			var got *Event
			for i := range ev {
				if ev[i].Kind == EventGranted {
					got = &ev[i]
				}
			}
			require.NotNil(t, got, "events %v", ev)
			assert.Equal(t, uint64(101), got.Token, "the hand-off's token is above the floor")
			assert.Equal(t, index, got.Generation)
			assert.Equal(t, uint64(5), got.Claim)
			assert.Equal(t, uint64(101), s.Lock("x").Token)
			requireInvariants(t, s)
		})
	}
}

// TestState_FloorSnapshot: the floor travels in the snapshot, and a
// restored state goes on exactly like the one it was taken from.
func TestState_FloorSnapshot(t *testing.T) {
	s := mustApply(t, opens4(2,
		cmdFloor(s1, 1, "z", 300),
		cmdFloor(s1, 2, "a", 200), // lower: nothing
		cmdFloor(s1, 3, "m", 5),   // below its index, 6: nothing
		cmdAcquire(s2, 1, "z"),    // 7: token 301
	)...)
	snap := decodeSnapshot(t, s)
	assert.Equal(t, uint32(4), snap.GetProtocol())
	assert.Equal(t, uint64(301), snap.GetTokenFloor())
	assert.Empty(t, snap.ProtoReflect().GetUnknown(), "no field of the per-name draft")
	assert.Equal(t, uint64(301), snap.GetLocks()[0].GetHolder().GetToken())
	assert.Equal(t, uint64(7), snap.GetLocks()[0].GetHolder().GetGeneration())

	b := mustSnapshot(t, s)
	r, err := Restore(b)
	require.NoError(t, err)
	assert.Equal(t, b, mustSnapshot(t, r), "restore and snapshot give the same bytes")
	assert.Equal(t, tokenFloorOf(s), tokenFloorOf(r))
	requireInvariants(t, r)
	for i, cmd := range []*fsmpb.Command{
		cmdAcquire(s1, 4, "a"),      // 8: token 302
		cmdRelease(s2, 2, "z", 301), // 9
		cmdAcquire(s1, 5, "z"),      // 10: token 303
		cmdFloor(s2, 3, "q", 11),    // 11: equal to the index: nothing
		cmdFloor(s2, 4, "q", 12),    // 12: the same
	} {
		index := uint64(8 + i)
		r1, e1 := applyOK(t, s, index, cmd)
		r2, e2 := applyOK(t, r, index, cmd)
		assert.True(t, proto.Equal(r1, r2), "index %d", index)
		assert.Equal(t, e1, e2, "index %d", index)
		assert.Equal(t, mustSnapshot(t, s), mustSnapshot(t, r), "index %d", index)
	}
	assert.Equal(t, uint64(302), s.Lock("a").Token)
	assert.Equal(t, uint64(303), s.Lock("z").Token)
	assert.Equal(t, uint64(303), tokenFloorOf(r))
}

// TestState_FloorsOfManyNamesStayO1: FloorToken of 10,000 distinct names
// with floors far above the index (ZooKeeper's zxids start at 2^32) keeps
// one number: the snapshot does not grow with the names, and nothing
// caps them (a floor per name grew one entry a name, dropped none, and
// was refused for good once the cap was reached).
func TestState_FloorsOfManyNamesStayO1(t *testing.T) {
	const names = 10_000
	zxid := uint64(1) << 33
	s := mustApply(t, opens4(1)...)
	const seq0 = 1 << 20 // seqs of one varint length, like the floors
	floor := func(i int) *fsmpb.Command {
		// acked_below = seq: the request cache keeps one answer.
		return withAcked(cmdFloor(s1, seq0+uint64(i), fmt.Sprintf("name-%05d", i), zxid+uint64(i)), seq0+uint64(i))
	}
	index := uint64(3)
	var first []byte
	for i := range names {
		index++
		require.NoError(t, s.Admit(floor(i), Limits{Sessions: 1, SessionsPerNode: 1, Names: 1, NamesPerSession: 1, WaitersPerName: 1}),
			"no cap refuses a floor")
		res, _ := applyOK(t, s, index, floor(i))
		require.Equal(t, fsmpb.Code_CODE_OK, res.GetCode(), "name %d", i)
		if i == 0 {
			first = mustSnapshot(t, s)
		}
	}
	last := mustSnapshot(t, s)
	assert.Equal(t, len(first), len(last), "the snapshot after %d names is the size of the one after 1", names)
	assert.Equal(t, zxid+names-1, tokenFloorOf(s))
	res, _ := applyOK(t, s, index+1, cmdAcquire(s1, seq0+names, "fresh"))
	assertResult(t, resGranted(zxid+names, index+1), res)
}

func TestRestore_BadTokenFloor(t *testing.T) {
	base := func(t *testing.T) *fsmpb.Snapshot {
		t.Helper()
		return decodeSnapshot(t, mustApply(t, opens4(2, cmdFloor(s1, 1, "a", 100), cmdAcquire(s2, 1, "a"))...))
	}
	restore := func(t *testing.T, p *fsmpb.Snapshot) error {
		t.Helper()
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		require.NoError(t, err)
		_, err = Restore(b)
		return err
	}
	require.Equal(t, uint64(101), base(t).GetTokenFloor())
	require.NoError(t, restore(t, base(t)), "the base restores")
	for _, c := range []struct {
		what string
		edit func(p *fsmpb.Snapshot)
	}{
		{"a floor at level 3", func(p *fsmpb.Snapshot) {
			p.Protocol = 3
			p.Locks = nil
		}},
		{"a floor at level 2", func(p *fsmpb.Snapshot) {
			p.Protocol = 2
			p.Locks = nil
		}},
		{"a floor beyond any token", func(p *fsmpb.Snapshot) { p.TokenFloor = 2*MaxTokenFloor + 1 }},
		{"a floor below a lease's token", func(p *fsmpb.Snapshot) { p.TokenFloor = 100 }},
		{"a token above its generation at level 3", func(p *fsmpb.Snapshot) {
			p.Protocol, p.TokenFloor = 3, 0
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			p := base(t)
			c.edit(p)
			assert.ErrorIs(t, restore(t, p), ErrCorrupt)
		})
	}
	t.Run("a token above its generation at level 4", func(t *testing.T) {
		p := base(t)
		p.TokenFloor = 0 // the floor went with the index passing it; the lease stays
		assert.NoError(t, restore(t, p))
	})
	t.Run("the largest floor a grant can leave", func(t *testing.T) {
		p := base(t)
		p.TokenFloor = 2 * MaxTokenFloor
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		require.NoError(t, err)
		r, err := Restore(b)
		require.NoError(t, err)
		assert.Equal(t, uint64(2*MaxTokenFloor), tokenFloorOf(r))
	})
}

func TestValidate_FloorToken(t *testing.T) {
	assert.NoError(t, Validate(cmdFloor(s1, 1, "x", 0)))
	assert.NoError(t, Validate(cmdFloor(s1, 1, "x", MaxTokenFloor)))
	assert.ErrorIs(t, Validate(cmdFloor(s1, 1, "x", MaxTokenFloor+1)), ErrInvalid)
	assert.ErrorIs(t, Validate(cmdFloor(s1, 1, "", 5)), ErrInvalid)
	assert.ErrorIs(t, Validate(cmdFloor(0, 1, "x", 5)), ErrInvalid)
	noReq := cmdFloor(s1, 1, "x", 5)
	noReq.GetFloorToken().Req = nil
	assert.ErrorIs(t, Validate(noReq), ErrInvalid)
	assert.Equal(t, 4, Needs(cmdFloor(s1, 1, "x", 5)))
	assert.Equal(t, uint64(lock.MaxTokenFloor), uint64(MaxTokenFloor), "fsm repeats lock's bound")
}
