package fsm

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Protocol 4 (DESIGN.md, "Protocol 4"): token floors.

// opens4 opens sessions 1..n and raises the level to 4 (index n+1); more
// start at index n+2.
func opens4(n int, more ...*fsmpb.Command) []*fsmpb.Command {
	return append(opens(n, cmdSetProtocol(4)), more...)
}

func cmdFloor(session, seq uint64, name string, floor uint64) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{Req: rq(session, seq), Name: name, Floor: floor}}}
}

// floorsOf is the floor map of s, nil if empty.
func floorsOf(s *State) map[string]uint64 {
	if s.floors.len() == 0 {
		return nil
	}
	m := map[string]uint64{}
	for name, it := range s.floors.by {
		m[name] = it.floor
	}
	return m
}

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
				assert.Equal(t, map[string]uint64{"x": 101}, floorsOf(s), "the used floor becomes the token")
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
			check: func(t *testing.T, s *State) {
				assert.Equal(t, map[string]uint64{"x": 102}, floorsOf(s))
			},
		},
		{
			name:           "FloorToken is OK and stores its floor",
			setup:          opens4(2),
			cmd:            cmdFloor(s1, 1, "x", 100),
			want:           resOK(),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Equal(t, map[string]uint64{"x": 100}, floorsOf(s))
				assert.False(t, s.Lock("x").Held, "a floor holds nothing")
			},
		},
		{
			name:           "a floor below the index is a no-op leaving no entry",
			setup:          opens4(2),
			cmd:            cmdFloor(s1, 1, "x", 3),
			want:           resOK(),
			locksUnchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Nil(t, floorsOf(s))
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "x"))
				assertResult(t, resGranted(5, 5), res)
			},
		},
		{
			name:  "a floor equal to the index is a no-op too",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "x", 4),
			want:  resOK(),
			check: func(t *testing.T, s *State) { assert.Nil(t, floorsOf(s)) },
		},
		{
			name:  "a lower floor never lowers one",
			setup: opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:   cmdFloor(s1, 2, "x", 50),
			want:  resOK(),
			check: func(t *testing.T, s *State) { assert.Equal(t, map[string]uint64{"x": 100}, floorsOf(s)) },
		},
		{
			name:   "a floor is per name",
			setup:  opens4(2, cmdFloor(s1, 1, "x", 100)),
			cmd:    cmdAcquire(s2, 1, "y"),
			want:   resGranted(5, 5),
			events: []Event{granted("y", s2, 1, 5, 5, 5)},
			check:  func(t *testing.T, s *State) { assert.Equal(t, map[string]uint64{"x": 100}, floorsOf(s)) },
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
			check: func(t *testing.T, s *State) { assert.Nil(t, floorsOf(s)) },
		},
		{
			name:  "MaxTokenFloor itself is accepted",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "x", MaxTokenFloor),
			want:  resOK(),
			check: func(t *testing.T, s *State) {
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "x"))
				assertResult(t, resGranted(MaxTokenFloor+1, 5), res)
			},
		},
		{
			name:  "a bad name: INVALID",
			setup: opens4(2),
			cmd:   cmdFloor(s1, 1, "bad\x00", 100),
			want:  res(fsmpb.Code_CODE_INVALID),
		},
		{
			name:  "an unknown session",
			setup: opens4(2),
			cmd:   cmdFloor(9, 1, "x", 100),
			want:  res(fsmpb.Code_CODE_UNKNOWN_SESSION),
			check: func(t *testing.T, s *State) { assert.Nil(t, floorsOf(s)) },
		},
		{
			name:      "level 3: UNSUPPORTED, nothing changes, not even the cache",
			setup:     opens3(2),
			cmd:       cmdFloor(s1, 1, "x", 100),
			want:      res(fsmpb.Code_CODE_UNSUPPORTED),
			unchanged: true,
			check: func(t *testing.T, s *State) {
				assert.Nil(t, floorsOf(s))
				res, _ := applyOK(t, s, 5, cmdAcquire(s2, 1, "x"))
				assertResult(t, resGranted(5, 5), res)
			},
		},
	})
}

// TestState_FloorDroppedOnceIndexPasses: a floor stays while a later grant
// could use it, counts for a grant at its own index, and is gone once the
// index has passed it (at the end of an entry that is not ignorable: those
// change nothing at all).
func TestState_FloorDroppedOnceIndexPasses(t *testing.T) {
	s := mustApply(t, opens4(2, cmdFloor(s1, 1, "x", 10))...) // floor at index 4
	for i := uint64(5); i < 10; i++ {
		applyOK(t, s, i, cmdAcquire(s1, i, "other"))
	}
	applyOK(t, s, 10, &fsmpb.Command{Ignorable: true})
	applyOK(t, s, 11, &fsmpb.Command{Ignorable: true})
	assert.Equal(t, map[string]uint64{"x": 10}, floorsOf(s), "ignorable entries change nothing")
	s = mustApply(t, opens4(2, cmdFloor(s1, 1, "x", 10))...)
	for i := uint64(5); i < 10; i++ {
		applyOK(t, s, i, cmdAcquire(s1, i, "other"))
	}
	assert.Equal(t, map[string]uint64{"x": 10}, floorsOf(s), "index 9: a grant at 10 still needs it")
	twin, err := Restore(mustSnapshot(t, s))
	require.NoError(t, err)

	res, ev := applyOK(t, s, 10, cmdAcquire(s2, 1, "x"))
	assertResult(t, resGranted(11, 10), res)
	assert.Equal(t, []Event{granted("x", s2, 1, 10, 11, 10)}, ev)
	assert.Equal(t, map[string]uint64{"x": 11}, floorsOf(s))
	applyOK(t, s, 11, cmdAcquire(s1, 11, "other"))
	assert.Nil(t, floorsOf(s), "index 11 passed the floor 11")

	applyOK(t, twin, 10, cmdAcquire(s1, 10, "other"))
	assert.Nil(t, floorsOf(twin), "index 10 passed the floor 10")
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

// TestState_FloorSnapshot: floors travel in the snapshot, sorted, and a
// restored state goes on exactly like the one it was taken from.
func TestState_FloorSnapshot(t *testing.T) {
	s := mustApply(t, opens4(2,
		cmdFloor(s1, 1, "z", 300),
		cmdFloor(s1, 2, "a", 200),
		cmdFloor(s1, 3, "m", 5), // below its index, 6: nothing
		cmdAcquire(s2, 1, "z"),  // 7: token 301
	)...)
	snap := decodeSnapshot(t, s)
	assert.Equal(t, uint32(4), snap.GetProtocol())
	require.Len(t, snap.GetFloors(), 2)
	assert.True(t, proto.Equal(&fsmpb.Floor{Name: "a", Floor: 200}, snap.GetFloors()[0]), "sorted by name: %v", snap.GetFloors())
	assert.True(t, proto.Equal(&fsmpb.Floor{Name: "z", Floor: 301}, snap.GetFloors()[1]), "%v", snap.GetFloors())
	assert.Equal(t, uint64(301), snap.GetLocks()[0].GetHolder().GetToken())
	assert.Equal(t, uint64(7), snap.GetLocks()[0].GetHolder().GetGeneration())

	b := mustSnapshot(t, s)
	r, err := Restore(b)
	require.NoError(t, err)
	assert.Equal(t, b, mustSnapshot(t, r), "restore and snapshot give the same bytes")
	assert.Equal(t, floorsOf(s), floorsOf(r))
	requireInvariants(t, r)
	for i, cmd := range []*fsmpb.Command{
		cmdAcquire(s1, 4, "a"),      // 8: token 201
		cmdRelease(s2, 2, "z", 301), // 9
		cmdAcquire(s1, 5, "z"),      // 10: token 302
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
	assert.Equal(t, uint64(201), s.Lock("a").Token)
	assert.Equal(t, uint64(302), s.Lock("z").Token)
	assert.Equal(t, map[string]uint64{"a": 201, "z": 302}, floorsOf(r))
}

func TestRestore_BadFloors(t *testing.T) {
	base := func(t *testing.T) *fsmpb.Snapshot {
		t.Helper()
		return decodeSnapshot(t, mustApply(t, opens4(2, cmdFloor(s1, 1, "a", 100), cmdFloor(s1, 2, "b", 200), cmdAcquire(s2, 1, "a"))...))
	}
	restore := func(t *testing.T, p *fsmpb.Snapshot) error {
		t.Helper()
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		require.NoError(t, err)
		_, err = Restore(b)
		return err
	}
	require.NoError(t, restore(t, base(t)), "the base restores")
	for _, c := range []struct {
		what string
		edit func(p *fsmpb.Snapshot)
		want error
	}{
		{"floors at level 3", func(p *fsmpb.Snapshot) {
			p.Protocol = 3
			p.Locks = nil
		}, ErrCorrupt},
		{"a bad name", func(p *fsmpb.Snapshot) { p.Floors[0].Name = "bad\x00" }, ErrCorrupt},
		{"an empty name", func(p *fsmpb.Snapshot) { p.Floors[0].Name = "" }, ErrCorrupt},
		{"a long name", func(p *fsmpb.Snapshot) { p.Floors[0].Name = strings.Repeat("x", MaxNameLen+1) }, ErrCorrupt},
		{"a duplicate name", func(p *fsmpb.Snapshot) { p.Floors[1].Name = p.Floors[0].Name }, ErrCorrupt},
		{"floor 0", func(p *fsmpb.Snapshot) { p.Floors[0].Floor = 0 }, ErrCorrupt},
		{"a floor beyond any token", func(p *fsmpb.Snapshot) { p.Floors[0].Floor = 2*MaxTokenFloor + 1 }, ErrCorrupt},
		{"a token above its generation at level 3", func(p *fsmpb.Snapshot) {
			p.Protocol, p.Floors = 3, nil
		}, ErrCorrupt},
	} {
		t.Run(c.what, func(t *testing.T) {
			p := base(t)
			c.edit(p)
			assert.ErrorIs(t, restore(t, p), c.want)
		})
	}
	t.Run("a token above its generation at level 4", func(t *testing.T) {
		p := base(t)
		p.Floors = nil // the floor went with the index passing it; the lease stays
		assert.NoError(t, restore(t, p))
	})
	t.Run("the largest floor a grant can leave", func(t *testing.T) {
		p := base(t)
		p.Floors[1].Floor = 2 * MaxTokenFloor
		assert.NoError(t, restore(t, p))
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

func TestState_AdmitFloors(t *testing.T) {
	s := mustApply(t, opens4(2, cmdFloor(s1, 1, "a", 100), cmdFloor(s1, 2, "b", 100))...)
	assert.NoError(t, s.Admit(cmdFloor(s1, 3, "c", 100), Limits{Floors: 3}))
	assert.ErrorIs(t, s.Admit(cmdFloor(s1, 3, "c", 100), Limits{Floors: 2}), ErrLimit, "a new name when full")
	assert.NoError(t, s.Admit(cmdFloor(s1, 3, "a", 500), Limits{Floors: 2}), "raising a floor that exists")
	assert.NoError(t, s.Admit(cmdFloor(s1, 2, "c", 100), Limits{Floors: 2}), "a repeat of a cached request")
	assert.NoError(t, s.Admit(cmdFloor(9, 1, "c", 100), Limits{Floors: 2}), "an unknown session")
	assert.NoError(t, s.Admit(cmdFloor(s1, 3, "c", 100), Limits{}), "no cap")
}
