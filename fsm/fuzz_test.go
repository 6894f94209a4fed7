package fsm

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// fuzzIndex is the index at which FuzzDecode applies its command: above
// every index of fuzzBase.
const fuzzIndex = 2000

// Leases of fuzzBase that the golden commands of protocol 2 name: a TTL
// lease whose session has expired (adoptable), and a revoked lease.
const (
	fuzzOrphanName   = "b"
	fuzzOrphanToken  = 13
	fuzzRevokedName  = "r"
	fuzzRevokedToken = 15
)

// The client session of fuzzBase and its keyed lease (protocol 3).
const (
	fuzzClient     = 0xc11e47
	fuzzKeyedName  = "k"
	fuzzKeyedToken = 17
)

var (
	fuzzClientSecret = bytes.Repeat([]byte{0xc1}, KeyLen)
	fuzzLeaseKey     = bytes.Repeat([]byte{0xa0}, KeyLen)
)

// The token floor of fuzzBase (protocol 4): above fuzzIndex, so that the
// grants there, of any name, get fuzzFloor+1, fuzzFloor+2, ... (set by a
// FloorToken of fuzzFloorName).
const (
	fuzzFloorName = "f"
	fuzzFloor     = 5000
)

// fuzzBase returns the snapshot FuzzDecode applies commands to, at
// protocol level 4: fuzzBase3's state with a token floor.
func fuzzBase(t testing.TB) []byte {
	t.Helper()
	s, err := Restore(fuzzBase3(t))
	require.NoError(t, err)
	for i, cmd := range []*fsmpb.Command{cmdSetProtocol(4), cmdFloor(s2, 10, fuzzFloorName, fuzzFloor)} {
		_, _, err := s.Apply(1241+uint64(i), cmd)
		require.NoError(t, err)
	}
	require.NoError(t, checkInvariants(s))
	return mustSnapshot(t, s)
}

// fuzzBase3 returns the snapshot FuzzDecode applied commands to at
// protocol level 3: the sessions and names of the golden commands (and of
// small hand-written seeds), a TTL lease with a refreshed generation,
// waiters, a TTL lease whose session has expired, a revoked lease, and a
// client session holding a keyed TTL lease.
func fuzzBase3(t testing.TB) []byte {
	t.Helper()
	s := New()
	steps := []struct {
		index uint64
		cmd   *fsmpb.Command
	}{
		{1, cmdOpen(goldenSession, 10*time.Second, "node-a")},
		{2, cmdOpen(s1, sessTTL, "n1")},
		{3, cmdOpen(s2, sessTTL, "n2")},
		{4, cmdOpen(s3, sessTTL, "n3")},
		{5, cmdSetProtocol(3)},
		{6, cmdOpenClient(fuzzClient, fuzzClientSecret, "web")},
		{10, cmdAcquire(s1, 1, "a")},
		{11, cmdAcquire(s2, 1, "a", withTTL(time.Second))},
		{12, cmdAcquire(goldenSession, 1, "a")},
		{13, cmdAcquire(s3, 1, "b", withTTL(time.Second))},
		{14, cmdExpireSession(s3)},
		{fuzzRevokedToken, cmdAcquire(s2, 3, fuzzRevokedName, withTTL(time.Second))},
		{16, cmdRevoke(s1, 4, fuzzRevokedName, fuzzRevokedToken)},
		{fuzzKeyedToken, cmdAcquire(s1, 5, fuzzKeyedName, withTTL(time.Second), forClient(fuzzClient, fuzzClientSecret, fuzzLeaseKey))},
		{1200, cmdAcquire(s1, 2, goldenName, withTTL(30*time.Second))},
		{1230, cmdAcquire(goldenSession, 5, goldenName, withTTL(30*time.Second))},
		{1233, cmdAcquire(s2, 2, goldenName)},
		{1234, cmdRelease(s1, 3, goldenName, 1200)}, // goldenSession's claim 1230 holds with token 1234
		{1240, withStamp(cmdRefresh(goldenSession, 6, goldenName, 1234), 77)},
	}
	for _, st := range steps {
		_, _, err := s.Apply(st.index, st.cmd)
		require.NoError(t, err)
	}
	require.NoError(t, checkInvariants(s))
	return mustSnapshot(t, s)
}

// The names of fuzzBase5's locks of protocol 5.
const (
	fuzzSemName      = "sem"
	fuzzRWName       = "rw"
	fuzzElectionName = "el"
)

// fuzzBase5 returns the snapshot FuzzDecode applies commands to, at
// protocol level 5: fuzzBase's state with a semaphore of limit 2 whose
// permits are both held and a waiter, a read-write lock with two readers
// and a writer queued behind them, and an election with a leader and a
// candidate.
func fuzzBase5(t testing.TB) []byte {
	t.Helper()
	s, err := Restore(fuzzBase(t))
	require.NoError(t, err)
	steps := []*fsmpb.Command{
		cmdSetProtocol(5),
		cmdAcquire(s1, 20, fuzzSemName, withSemaphore(2)),
		cmdAcquire(s2, 20, fuzzSemName, withSemaphore(2), withTTL(time.Second)),
		cmdAcquire(goldenSession, 20, fuzzSemName, withSemaphore(2)),
		cmdAcquire(s1, 21, fuzzRWName, withMode(fsmpb.Mode_MODE_READ)),
		cmdAcquire(s2, 21, fuzzRWName, withMode(fsmpb.Mode_MODE_READ)),
		cmdAcquire(goldenSession, 21, fuzzRWName, withMode(fsmpb.Mode_MODE_WRITE)),
		cmdAcquire(goldenSession, 22, fuzzElectionName, withValue("leader")),
		cmdAcquire(s1, 22, fuzzElectionName, withValue("candidate")),
	}
	for i, cmd := range steps {
		res, _, err := s.Apply(1300+uint64(i), cmd)
		require.NoError(t, err)
		require.Contains(t, []fsmpb.Code{fsmpb.Code_CODE_OK, fsmpb.Code_CODE_GRANTED, fsmpb.Code_CODE_QUEUED}, res.GetCode(), "%v", cmd)
	}
	require.NoError(t, checkInvariants(s))
	return mustSnapshot(t, s)
}

// FuzzDecode feeds arbitrary bytes to Decode. What decodes must re-encode
// to an equal command, and must apply to a populated state without panic
// and without breaking its invariants.
func FuzzDecode(f *testing.F) {
	base := fuzzBase5(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			require.Nil(t, cmd)
			return
		}
		enc, err := Encode(cmd)
		require.NoError(t, err)
		back, err := Decode(enc)
		require.NoError(t, err)
		require.True(t, proto.Equal(cmd, back), "round trip: %v != %v", cmd, back)
		enc2, err := Encode(back)
		require.NoError(t, err)
		require.Equal(t, enc, enc2)

		s, err := Restore(base)
		require.NoError(t, err)
		twin, err := Restore(base)
		require.NoError(t, err)
		valid := Validate(cmd)
		floor := s.tokenFloor // fuzzFloor, raised by the grants of fuzzBase5 (protocol 5)
		res, events, err := s.Apply(fuzzIndex, cmd)
		if valid == nil {
			// What may enter the log is what Apply acts on as intended.
			require.NoError(t, err, "Validate accepted %v", cmd)
			require.NotEqual(t, fsmpb.Code_CODE_INVALID, res.GetCode(), "Validate accepted %v", cmd)
			require.NotEqual(t, fsmpb.Code_CODE_UNSUPPORTED, res.GetCode(), "Validate accepted %v", cmd)
		}
		if err != nil {
			require.ErrorIs(t, err, ErrUnknownCommand)
			if cmd.GetSetProtocol() != nil {
				require.Greater(t, cmd.GetSetProtocol().GetLevel(), uint32(Protocol))
			} else {
				require.Nil(t, cmd.GetOp())
				require.False(t, cmd.GetIgnorable())
			}
			require.Equal(t, base, mustSnapshot(t, s), "a refused command changed state")
			return
		}
		require.NotNil(t, res)
		require.NoError(t, checkInvariants(s))
		want := floor
		for _, ev := range events {
			if ev.Kind == EventGranted {
				want++
				require.Equal(t, want, ev.Token, "grants above the floor, in order")
				require.Equal(t, uint64(fuzzIndex), ev.Generation)
			}
		}
		// Determinism: the same entry on a copy gives the same everything.
		res2, events2, err := twin.Apply(fuzzIndex, back)
		require.NoError(t, err)
		require.True(t, proto.Equal(res, res2))
		require.Equal(t, events, events2)
		require.Equal(t, mustSnapshot(t, s), mustSnapshot(t, twin))

		// A retry of a request the session cached answers the same, with
		// no effect.
		before := mustSnapshot(t, s)
		retry, retryEvents, err := s.Apply(fuzzIndex+1, cmd)
		require.NoError(t, err)
		require.NoError(t, checkInvariants(s))
		if cachedRequest(cmd, res) && s.HasSession(reqOf(cmd).GetSession()) {
			require.True(t, proto.Equal(res, retry), "retry: %v, first %v", retry, res)
			require.Empty(t, retryEvents)
			require.Equal(t, before, mustSnapshot(t, s))
		}
	})
}

// cachedRequest reports whether Apply cached res under cmd's request.
func cachedRequest(cmd *fsmpb.Command, res *fsmpb.Result) bool {
	switch cmd.GetOp().(type) {
	case *fsmpb.Command_Acquire, *fsmpb.Command_Release, *fsmpb.Command_Refresh, *fsmpb.Command_Cancel,
		*fsmpb.Command_Revoke, *fsmpb.Command_Adopt, *fsmpb.Command_FloorToken:
	default:
		return false
	}
	c := res.GetCode()
	return c != fsmpb.Code_CODE_UNKNOWN_SESSION && c != fsmpb.Code_CODE_FORGOTTEN && c != fsmpb.Code_CODE_UNSUPPORTED
}

// FuzzRestore feeds arbitrary bytes to Restore. What restores must
// snapshot to bytes that restore to the same bytes, must satisfy the
// state's invariants, and must take further commands without panic.
func FuzzRestore(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Restore(data)
		if err != nil {
			if !errors.Is(err, ErrSnapshotVersion) {
				require.ErrorIs(t, err, ErrCorrupt)
			}
			require.Nil(t, s)
			return
		}
		snap := mustSnapshot(t, s)
		twin, err := Restore(snap)
		require.NoError(t, err, "a snapshot of a restored state does not restore")
		require.Equal(t, snap, mustSnapshot(t, twin))
		require.NoError(t, checkInvariants(s))

		cmds, index := followUps(t, snap)
		if index == 0 {
			return // indexes exhausted: nothing can be applied after it
		}
		for _, cmd := range cmds {
			res, events, err := s.Apply(index, cmd)
			require.NoError(t, err)
			res2, events2, err := twin.Apply(index, cmd)
			require.NoError(t, err)
			require.True(t, proto.Equal(res, res2))
			require.Equal(t, events, events2)
			require.NoError(t, checkInvariants(s), "after %v", cmd)
			index++
		}
		require.Equal(t, mustSnapshot(t, s), mustSnapshot(t, twin))
	})
}

// followUps returns commands touching every session and lock of snap, and
// the first index above everything in it (0 if there is none). The
// commands of protocol 2 come once before the raise to level 2 (a no-op
// on a level-1 state) and once after.
func followUps(t *testing.T, snap []byte) ([]*fsmpb.Command, uint64) {
	t.Helper()
	var pb fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(snap, &pb))
	var top uint64
	var cmds []*fsmpb.Command
	var sessions []uint64
	for _, ps := range pb.GetSessions() {
		sessions = append(sessions, ps.GetId())
	}
	seq := func(i int) uint64 { return math.MaxUint64 - 1000 + uint64(i) }
	for i, pl := range pb.GetLocks() {
		h := pl.GetHolder()
		top = max(top, h.GetToken(), h.GetGeneration(), h.GetClaim().GetId())
		for _, q := range pl.GetQueue() {
			top = max(top, q.GetId())
		}
		sess := h.GetClaim().GetSession()
		if len(sessions) > 0 {
			sess = sessions[i%len(sessions)]
		}
		cmds = append(cmds,
			cmdRevoke(sess, seq(8*i+4), pl.GetName(), h.GetToken()),
			cmdAdopt(sess, seq(8*i+5), pl.GetName(), h.GetToken()),
			cmdRefresh(sess, seq(8*i), pl.GetName(), h.GetToken()),
			cmdExpireLease(pl.GetName(), h.GetToken(), h.GetGeneration()),
			cmdAcquire(sess, seq(8*i+1), pl.GetName(), withTTL(time.Second)),
			cmdEndRevoked(pl.GetName(), h.GetToken()),
			cmdRelease(sess, seq(8*i+2), pl.GetName(), h.GetToken()),
		)
		if len(pl.GetQueue()) > 0 {
			cmds = append(cmds, cmdCancel(sess, seq(8*i+3), pl.GetName(), pl.GetQueue()[0].GetId()))
		}
		cmds = append(cmds, cmdFloor(sess, seq(8*i+6), pl.GetName(), top+1000))
		if i == 0 {
			cmds = append(cmds, cmdSetProtocol(2))
		}
	}
	for i, id := range slices.Backward(sessions) {
		if i%2 == 0 {
			cmds = append(cmds, cmdExpireSession(id))
		} else {
			cmds = append(cmds, cmdClose(id, seq(900)))
		}
	}
	cmds = append(cmds, cmdOpen(sessions0(sessions), sessTTL, "n"), cmdAcquire(sessions0(sessions), 1, "fuzz"))
	if top > math.MaxUint64-uint64(len(cmds))-1 {
		return nil, 0
	}
	return cmds, top + 1
}

// sessions0 returns a session ID that may or may not be in sessions: the
// first one, so that re-opening a just-ended session is exercised.
func sessions0(sessions []uint64) uint64 {
	if len(sessions) == 0 {
		return 1
	}
	return sessions[0]
}
