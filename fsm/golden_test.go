package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// update rewrites testdata/golden and the generated seeds of
// testdata/fuzz. Golden files are the wire format (commands of protocols 1
// and 2, snapshot formats 1 and 2): rewrite them only to add a file or for
// a deliberate change, and a change that breaks one is a new version.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden and the fuzz seeds derived from them")

const (
	goldenDir = "testdata/golden"
	// goldenSession is large so that its varint takes all 8 bytes' worth.
	goldenSession = 0x1122334455667788
	goldenClient  = 0x8877665544332211 // the session command-open_session-client.bin opens
	goldenName    = "orders/42"
	goldenStamp   = 1_700_000_000_000_000_000
)

type goldenCommand struct {
	file  string
	cmd   *fsmpb.Command
	check func(t *testing.T, c *fsmpb.Command)
}

// goldenCommands returns one command of each kind with every field set.
func goldenCommands() []goldenCommand {
	req := func(seq, acked uint64) *fsmpb.Request {
		return &fsmpb.Request{Session: goldenSession, Seq: seq, AckedBelow: acked}
	}
	checkReq := func(t *testing.T, r *fsmpb.Request, seq, acked uint64) {
		t.Helper()
		assert.Equal(t, uint64(goldenSession), r.GetSession(), "req.session")
		assert.Equal(t, seq, r.GetSeq(), "req.seq")
		assert.Equal(t, acked, r.GetAckedBelow(), "req.acked_below")
	}
	checkTop := func(t *testing.T, c *fsmpb.Command, stamp int64) {
		t.Helper()
		assert.Equal(t, stamp, c.GetStampUnixNano(), "stamp_unix_nano")
		assert.False(t, c.GetIgnorable(), "ignorable")
		assert.Empty(t, c.ProtoReflect().GetUnknown(), "unknown fields")
	}
	return []goldenCommand{
		{
			file: "command-open_session.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 1, Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
				Req: req(7, 3), TtlNs: int64(10 * time.Second), Node: "node-a",
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+1)
				op := c.GetOpenSession()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 7, 3)
				assert.Equal(t, int64(10_000_000_000), op.GetTtlNs())
				assert.Equal(t, "node-a", op.GetNode())
			},
		},
		{
			file: "command-close_session.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 2, Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
				Req: req(9, 8),
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+2)
				op := c.GetCloseSession()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 9, 8)
			},
		},
		{
			file: "command-expire_session.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 3, Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{
				Session: goldenSession,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+3)
				op := c.GetExpireSession()
				require.NotNil(t, op)
				assert.Equal(t, uint64(goldenSession), op.GetSession())
			},
		},
		{
			file: "command-acquire.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 4, Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
				Req: req(10, 9), Name: goldenName, Owner: "worker-7", TtlNs: int64(30 * time.Second), Try: true,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+4)
				op := c.GetAcquire()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 10, 9)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, "worker-7", op.GetOwner())
				assert.Equal(t, int64(30_000_000_000), op.GetTtlNs())
				assert.True(t, op.GetTry())
			},
		},
		{
			file: "command-release.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 5, Op: &fsmpb.Command_Release{Release: &fsmpb.Release{
				Req: req(11, 10), Name: goldenName, Token: 1234,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+5)
				op := c.GetRelease()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 11, 10)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1234), op.GetToken())
			},
		},
		{
			file: "command-refresh.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 6, Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{
				Req: req(12, 11), Name: goldenName, Token: 1234,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+6)
				op := c.GetRefresh()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 12, 11)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1234), op.GetToken())
			},
		},
		{
			file: "command-cancel.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 7, Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{
				Req: req(13, 12), Name: goldenName, Claim: 1230,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+7)
				op := c.GetCancel()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 13, 12)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1230), op.GetClaim())
			},
		},
		{
			file: "command-expire_lease.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 8, Op: &fsmpb.Command_ExpireLease{ExpireLease: &fsmpb.ExpireLease{
				Name: goldenName, Token: 1234, Generation: 1240,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+8)
				op := c.GetExpireLease()
				require.NotNil(t, op)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1234), op.GetToken())
				assert.Equal(t, uint64(1240), op.GetGeneration())
			},
		},
		{
			file: "command-set_protocol.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 9, Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{
				Level: 2,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+9)
				op := c.GetSetProtocol()
				require.NotNil(t, op)
				assert.Equal(t, uint32(2), op.GetLevel())
			},
		},
		{
			file: "command-revoke.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 10, Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{
				Req: req(14, 13), Name: goldenName, Token: 1234,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+10)
				op := c.GetRevoke()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 14, 13)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1234), op.GetToken())
			},
		},
		{
			file: "command-end_revoked.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 11, Op: &fsmpb.Command_EndRevoked{EndRevoked: &fsmpb.EndRevoked{
				Name: fuzzRevokedName, Token: fuzzRevokedToken,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+11)
				op := c.GetEndRevoked()
				require.NotNil(t, op)
				assert.Equal(t, fuzzRevokedName, op.GetName())
				assert.Equal(t, uint64(fuzzRevokedToken), op.GetToken())
			},
		},
		{
			file: "command-adopt.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 12, Op: &fsmpb.Command_Adopt{Adopt: &fsmpb.Adopt{
				Req: req(15, 14), Name: fuzzOrphanName, Token: fuzzOrphanToken,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+12)
				op := c.GetAdopt()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 15, 14)
				assert.Equal(t, fuzzOrphanName, op.GetName())
				assert.Equal(t, uint64(fuzzOrphanToken), op.GetToken())
			},
		},
		{
			file: "command-open_session-client.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 13, Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
				Req: &fsmpb.Request{Session: goldenClient}, TtlNs: int64(20 * time.Second), Node: "node-a", Secret: goldenSecret, Owner: "web-7",
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+13)
				op := c.GetOpenSession()
				require.NotNil(t, op)
				assert.Equal(t, uint64(goldenClient), op.GetReq().GetSession())
				assert.Equal(t, goldenSecret, op.GetSecret())
				assert.Equal(t, "web-7", op.GetOwner())
			},
		},
		{
			file: "command-acquire-for_session.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 14, Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
				Req: req(20, 9), Name: "orders/43", TtlNs: int64(30 * time.Second),
				ForSession: fuzzClient, Secret: fuzzClientSecret, Key: goldenKey,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+14)
				op := c.GetAcquire()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 20, 9)
				assert.Equal(t, uint64(fuzzClient), op.GetForSession())
				assert.Equal(t, fuzzClientSecret, op.GetSecret())
				assert.Equal(t, goldenKey, op.GetKey())
			},
		},
		{
			file: "command-release-key.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 15, Op: &fsmpb.Command_Release{Release: &fsmpb.Release{
				Req: req(21, 9), Name: fuzzKeyedName, Key: fuzzLeaseKey,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+15)
				op := c.GetRelease()
				require.NotNil(t, op)
				assert.Equal(t, uint64(0), op.GetToken())
				assert.Equal(t, fuzzLeaseKey, op.GetKey())
			},
		},
		{
			file: "command-floor_token.bin",
			cmd: &fsmpb.Command{StampUnixNano: goldenStamp + 16, Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{
				Req: req(22, 9), Name: goldenName, Floor: 1 << 40,
			}}},
			check: func(t *testing.T, c *fsmpb.Command) {
				checkTop(t, c, goldenStamp+16)
				op := c.GetFloorToken()
				require.NotNil(t, op)
				checkReq(t, op.GetReq(), 22, 9)
				assert.Equal(t, goldenName, op.GetName())
				assert.Equal(t, uint64(1<<40), op.GetFloor())
			},
		},
		{
			// What a newer version's skippable command looks like to v1.
			file: "command-unknown_ignorable.bin",
			cmd:  unknownCommand(true),
			check: func(t *testing.T, c *fsmpb.Command) {
				assert.Equal(t, int64(1), c.GetStampUnixNano())
				assert.True(t, c.GetIgnorable())
				assert.Nil(t, c.GetOp())
				want := protowire.AppendBytes(protowire.AppendTag(nil, 30, protowire.BytesType), []byte("future"))
				assert.Equal(t, want, []byte(c.ProtoReflect().GetUnknown()))
			},
		},
	}
}

// The secret and the key of the protocol-3 golden commands.
var (
	goldenSecret = []byte("0123456789abcdef")
	goldenKey    = []byte("fedcba9876543210")
)

// Sessions of the golden snapshot.
const (
	gsA = 0xa1
	gsB = 0xb2
	gsC = 0xc3
)

// goldenHistory is the fixed history of snapshot-v1.bin: entry i at index
// i+1, stamped goldenStamp + 1000*(i+1).
func goldenHistory() []*fsmpb.Command {
	cmds := []*fsmpb.Command{
		cmdOpen(gsA, 10*time.Second, "node-a"),                                    // 1
		cmdOpen(gsB, 20*time.Second, "node-b"),                                    // 2
		cmdAcquire(gsA, 1, "alpha", withOwner("a-owner")),                         // 3 granted
		cmdAcquire(gsB, 1, "alpha", withOwner("b-owner"), withTTL(5*time.Second)), // 4 queued
		cmdAcquire(gsB, 2, "beta", withOwner("b"), withTTL(5*time.Second)),        // 5 granted
		cmdRefresh(gsB, 3, "beta", 5),                                             // 6 generation 6
		withAcked(cmdAcquire(gsA, 2, "gamma"), 2),                                 // 7 granted; forgets A's seq 1
		cmdOpen(gsC, 10*time.Second, "node-c"),                                    // 8
		cmdAcquire(gsC, 1, "delta", withTTL(time.Second)),                         // 9 granted
		cmdExpireSession(gsC),                                                     // 10: delta outlives C
	}
	for i, c := range cmds {
		c.StampUnixNano = goldenStamp + 1000*int64(i+1)
	}
	return cmds
}

// goldenHistoryV2 is the fixed history of snapshot-v2.bin, stamped like
// goldenHistory: a lease granted before and after the raise to level 2, a
// stamped waiter, a revoked lease, an adopted lease and its cached result.
func goldenHistoryV2() []*fsmpb.Command {
	cmds := []*fsmpb.Command{
		cmdOpen(gsA, 10*time.Second, "node-a"),                                    // 1
		cmdOpen(gsB, 20*time.Second, "node-b"),                                    // 2
		cmdAcquire(gsA, 1, "alpha", withOwner("a-owner")),                         // 3 granted at level 1
		cmdSetProtocol(2),                                                         // 4
		cmdAcquire(gsB, 1, "alpha", withOwner("b-owner"), withTTL(5*time.Second)), // 5 queued, stamped
		cmdAcquire(gsB, 2, "beta", withOwner("b"), withTTL(5*time.Second)),        // 6 granted, stamped
		cmdRevoke(gsA, 2, "beta", 6),                                              // 7 beta revoked
		cmdOpen(gsC, 10*time.Second, "node-c"),                                    // 8
		cmdAcquire(gsC, 1, "delta", withTTL(time.Second)),                         // 9 granted
		cmdExpireSession(gsC),                                                     // 10: delta outlives C
		cmdAdopt(gsA, 3, "delta", 9),                                              // 11 A adopts delta
		cmdAcquire(gsB, 3, "epsilon"),                                             // 12 granted
		withAcked(cmdAcquire(gsA, 4, "gamma"), 2),                                 // 13 granted; forgets A's seq 1
	}
	for i, c := range cmds {
		c.StampUnixNano = goldenStamp + 1000*int64(i+1)
	}
	return cmds
}

func goldenStampAt(index int64) int64 { return goldenStamp + 1000*index }

func goldenSnapshot(t testing.TB) []byte {
	t.Helper()
	return mustSnapshot(t, mustApply(t, goldenHistory()...))
}

func goldenSnapshotV2(t testing.TB) []byte {
	t.Helper()
	return mustSnapshot(t, mustApply(t, goldenHistoryV2()...))
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	require.NoError(t, err, "run go test ./fsm -run Golden -update to create it")
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

func TestDecode_Golden(t *testing.T) {
	for _, g := range goldenCommands() {
		t.Run(g.file, func(t *testing.T) {
			if *update {
				b, err := Encode(g.cmd)
				require.NoError(t, err)
				writeFile(t, filepath.Join(goldenDir, g.file), b)
			}
			data := readGolden(t, g.file)
			cmd, err := Decode(data)
			require.NoError(t, err)
			g.check(t, cmd)
			again, err := Encode(cmd)
			require.NoError(t, err)
			assert.Equal(t, data, again, "re-encoding changed the bytes")
		})
	}
}

// TestState_ApplyGolden applies the golden commands to the state the
// fuzzers start from, so a golden file is also a meaningful fuzz seed.
func TestState_ApplyGolden(t *testing.T) {
	want := map[string]*fsmpb.Result{
		"command-open_session.bin":   resOK(),
		"command-close_session.bin":  resOK(),
		"command-expire_session.bin": resOK(),
		"command-acquire.bin":        res(fsmpb.Code_CODE_HELD),
		"command-release.bin":        resOK(),
		"command-refresh.bin":        {Code: fsmpb.Code_CODE_OK, Token: 1234},
		"command-cancel.bin":         {Code: fsmpb.Code_CODE_OK, Token: 1234, Claim: 1230},
		"command-expire_lease.bin":   resOK(),
		"command-set_protocol.bin":   resOK(),
		"command-revoke.bin":         resToken(1234),
		"command-end_revoked.bin":    resOK(),
		"command-adopt.bin": {
			// At level 3 the adopted claim takes the Adopt's index.
			Code: fsmpb.Code_CODE_OK, Token: fuzzOrphanToken, Claim: fuzzIndex, Generation: fuzzIndex, TtlNs: int64(time.Second),
		},
		"command-unknown_ignorable.bin":   res(fsmpb.Code_CODE_UNSPECIFIED),
		"command-open_session-client.bin": resOK(),
		"command-acquire-for_session.bin": {Code: fsmpb.Code_CODE_GRANTED, Token: fuzzFloor + 1, Claim: fuzzIndex, Key: goldenKey},
		"command-release-key.bin":         resToken(fuzzKeyedToken),
		"command-floor_token.bin":         resOK(),
	}
	for _, g := range goldenCommands() {
		t.Run(g.file, func(t *testing.T) {
			s, err := Restore(fuzzBase(t))
			require.NoError(t, err)
			got, _, err := s.Apply(fuzzIndex, g.cmd)
			require.NoError(t, err)
			assertResult(t, want[g.file], got)
			assert.NoError(t, checkInvariants(s))
		})
	}
}

func TestRestore_GoldenV1(t *testing.T) {
	const file = "snapshot-v1.bin"
	if *update {
		writeFile(t, filepath.Join(goldenDir, file), goldenSnapshot(t))
	}
	data := readGolden(t, file)

	// The wire contents, field by field.
	var snap fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(data, &snap))
	assert.Equal(t, uint32(1), snap.GetVersion())
	assert.Empty(t, snap.ProtoReflect().GetUnknown())
	require.Len(t, snap.GetSessions(), 2)
	a, b := snap.GetSessions()[0], snap.GetSessions()[1]
	assert.Equal(t, uint64(gsA), a.GetId())
	assert.Equal(t, int64(10*time.Second), a.GetTtlNs())
	assert.Equal(t, "node-a", a.GetNode())
	assert.Equal(t, uint64(2), a.GetAckedBelow())
	require.Len(t, a.GetResults(), 1)
	assert.Equal(t, uint64(2), a.GetResults()[0].GetSeq())
	assertResult(t, resGranted(7, 7), a.GetResults()[0].GetResult())
	assert.Equal(t, uint64(gsB), b.GetId())
	assert.Equal(t, int64(20*time.Second), b.GetTtlNs())
	assert.Equal(t, "node-b", b.GetNode())
	assert.Equal(t, uint64(0), b.GetAckedBelow())
	require.Len(t, b.GetResults(), 3)
	for i, want := range []*fsmpb.Result{resQueued(4), resGranted(5, 5), {Code: fsmpb.Code_CODE_OK, Token: 5}} {
		assert.Equal(t, uint64(i+1), b.GetResults()[i].GetSeq())
		assertResult(t, want, b.GetResults()[i].GetResult())
	}

	require.Len(t, snap.GetLocks(), 4)
	names := []string{}
	for _, l := range snap.GetLocks() {
		names = append(names, l.GetName())
	}
	assert.Equal(t, []string{"alpha", "beta", "delta", "gamma"}, names)
	claimEq := func(want, got *fsmpb.Claim) {
		t.Helper()
		assert.True(t, proto.Equal(want, got), "claim: want {%v}, got {%v}", want, got)
	}
	alpha, beta, delta, gamma := snap.GetLocks()[0], snap.GetLocks()[1], snap.GetLocks()[2], snap.GetLocks()[3]
	claimEq(&fsmpb.Claim{Id: 3, Session: gsA, Seq: 1, Owner: "a-owner"}, alpha.GetHolder().GetClaim())
	assert.Equal(t, uint64(3), alpha.GetHolder().GetToken())
	assert.Equal(t, uint64(3), alpha.GetHolder().GetGeneration())
	assert.Equal(t, goldenStampAt(3), alpha.GetHolder().GetRefreshedUnixNano())
	require.Len(t, alpha.GetQueue(), 1)
	claimEq(&fsmpb.Claim{Id: 4, Session: gsB, Seq: 1, Owner: "b-owner", TtlNs: int64(5 * time.Second)}, alpha.GetQueue()[0])
	claimEq(&fsmpb.Claim{Id: 5, Session: gsB, Seq: 2, Owner: "b", TtlNs: int64(5 * time.Second)}, beta.GetHolder().GetClaim())
	assert.Equal(t, uint64(5), beta.GetHolder().GetToken())
	assert.Equal(t, uint64(6), beta.GetHolder().GetGeneration())
	assert.Equal(t, goldenStampAt(6), beta.GetHolder().GetRefreshedUnixNano())
	assert.Empty(t, beta.GetQueue())
	claimEq(&fsmpb.Claim{Id: 9, Session: gsC, Seq: 1, TtlNs: int64(time.Second)}, delta.GetHolder().GetClaim())
	assert.Equal(t, uint64(9), delta.GetHolder().GetToken())
	assert.Equal(t, uint64(9), delta.GetHolder().GetGeneration())
	assert.Equal(t, goldenStampAt(9), delta.GetHolder().GetRefreshedUnixNano())
	claimEq(&fsmpb.Claim{Id: 7, Session: gsA, Seq: 2}, gamma.GetHolder().GetClaim())
	assert.Equal(t, uint64(7), gamma.GetHolder().GetToken())

	// The restored state.
	s, err := Restore(data)
	require.NoError(t, err)
	assert.NoError(t, checkInvariants(s))
	assert.Equal(t, []SessionInfo{
		{ID: gsA, TTL: 10 * time.Second, Node: "node-a"},
		{ID: gsB, TTL: 20 * time.Second, Node: "node-b"},
	}, s.Sessions())
	assert.Equal(t, 1, s.Protocol())
	assert.Equal(t, LockInfo{
		Name: "alpha", Held: true, Token: 3, Generation: 3, Claim: 3, Session: gsA, Node: "node-a",
		Owner: "a-owner", RefreshedUnixNano: goldenStampAt(3), Waiters: 1,
	}, s.Lock("alpha"))
	assert.Equal(t, []LockInfo{
		{Name: "beta", Held: true, Token: 5, Generation: 6, Claim: 5, Session: gsB, Node: "node-b", Owner: "b", TTL: 5 * time.Second, RefreshedUnixNano: goldenStampAt(6)},
		{Name: "delta", Held: true, Token: 9, Generation: 9, Claim: 9, Session: gsC, TTL: time.Second, RefreshedUnixNano: goldenStampAt(9)},
	}, s.TTLLeases())
	assert.Equal(t, data, mustSnapshot(t, s), "restore and snapshot changed the bytes")

	// The history still produces these bytes (I5 across builds).
	assert.Equal(t, data, goldenSnapshot(t), "the fixed history no longer gives snapshot-v1.bin")

	// And the restored state behaves: closing A hands alpha to B's TTL claim.
	got, events, err := s.Apply(11, cmdClose(gsA, 3))
	require.NoError(t, err)
	assertResult(t, resOK(), got)
	assert.Equal(t, []Event{
		{Kind: EventEnded, Name: "alpha", Session: gsA, Seq: 1, Claim: 3, Token: 3, Generation: 3, Reason: ReasonClosed},
		{Kind: EventGranted, Name: "alpha", Session: gsB, Seq: 1, Claim: 4, Token: 11, Generation: 11, TTL: 5 * time.Second},
		{Kind: EventEnded, Name: "gamma", Session: gsA, Seq: 2, Claim: 7, Token: 7, Generation: 7, Reason: ReasonClosed},
		{Kind: EventSessionEnded, Session: gsA, TTL: 10 * time.Second, Reason: ReasonClosed},
	}, events)
}

func TestRestore_GoldenV2(t *testing.T) {
	const file = "snapshot-v2.bin"
	if *update {
		writeFile(t, filepath.Join(goldenDir, file), goldenSnapshotV2(t))
	}
	data := readGolden(t, file)

	// The wire contents, field by field.
	var snap fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(data, &snap))
	assert.Equal(t, uint32(2), snap.GetVersion())
	assert.Equal(t, uint32(2), snap.GetProtocol())
	assert.False(t, hasUnknown(snap.ProtoReflect()))
	require.Len(t, snap.GetSessions(), 2)
	a, b := snap.GetSessions()[0], snap.GetSessions()[1]
	assert.Equal(t, uint64(gsA), a.GetId())
	assert.Equal(t, uint64(2), a.GetAckedBelow())
	wantResults := func(ps *fsmpb.Session, want ...*fsmpb.Result) {
		t.Helper()
		require.Len(t, ps.GetResults(), len(want))
		for i, r := range ps.GetResults() {
			assertResult(t, want[i], r.GetResult())
		}
	}
	wantResults(a,
		resToken(6), // seq 2: the revoke
		&fsmpb.Result{Code: fsmpb.Code_CODE_OK, Token: 9, Claim: 9, Generation: 11, TtlNs: int64(time.Second)}, // seq 3: the adoption
		resGranted(13, 13))
	assert.Equal(t, uint64(gsB), b.GetId())
	assert.Equal(t, "node-b", b.GetNode())
	wantResults(b, resQueued(5), resGranted(6, 6), resGranted(12, 12))

	require.Len(t, snap.GetLocks(), 5)
	leaseEq := func(want, got *fsmpb.Lease) {
		t.Helper()
		assert.True(t, proto.Equal(want, got), "lease: want {%v}, got {%v}", want, got)
	}
	alpha, beta, delta, epsilon, gamma := snap.GetLocks()[0], snap.GetLocks()[1], snap.GetLocks()[2], snap.GetLocks()[3], snap.GetLocks()[4]
	assert.Equal(t, []string{"alpha", "beta", "delta", "epsilon", "gamma"},
		[]string{alpha.GetName(), beta.GetName(), delta.GetName(), epsilon.GetName(), gamma.GetName()})
	leaseEq(&fsmpb.Lease{ // granted at level 1: no grant stamp
		Claim: &fsmpb.Claim{Id: 3, Session: gsA, Seq: 1, Owner: "a-owner"}, Token: 3, Generation: 3, RefreshedUnixNano: goldenStampAt(3),
	}, alpha.GetHolder())
	require.Len(t, alpha.GetQueue(), 1)
	assert.True(t, proto.Equal(&fsmpb.Claim{
		Id: 5, Session: gsB, Seq: 1, Owner: "b-owner", TtlNs: int64(5 * time.Second), QueuedUnixNano: goldenStampAt(5),
	}, alpha.GetQueue()[0]), "alpha's waiter: %v", alpha.GetQueue()[0])
	leaseEq(&fsmpb.Lease{
		Claim: &fsmpb.Claim{Id: 6, Session: gsB, Seq: 2, Owner: "b", TtlNs: int64(5 * time.Second)}, Token: 6, Generation: 6,
		RefreshedUnixNano: goldenStampAt(6), GrantedUnixNano: goldenStampAt(6), Revoked: true,
	}, beta.GetHolder())
	leaseEq(&fsmpb.Lease{ // adopted by A at 11 with A's seq 3
		Claim: &fsmpb.Claim{Id: 9, Session: gsA, Seq: 3, TtlNs: int64(time.Second)}, Token: 9, Generation: 11,
		RefreshedUnixNano: goldenStampAt(11), GrantedUnixNano: goldenStampAt(9),
	}, delta.GetHolder())
	leaseEq(&fsmpb.Lease{
		Claim: &fsmpb.Claim{Id: 12, Session: gsB, Seq: 3}, Token: 12, Generation: 12,
		RefreshedUnixNano: goldenStampAt(12), GrantedUnixNano: goldenStampAt(12),
	}, epsilon.GetHolder())
	leaseEq(&fsmpb.Lease{
		Claim: &fsmpb.Claim{Id: 13, Session: gsA, Seq: 4}, Token: 13, Generation: 13,
		RefreshedUnixNano: goldenStampAt(13), GrantedUnixNano: goldenStampAt(13),
	}, gamma.GetHolder())

	// The restored state.
	s, err := Restore(data)
	require.NoError(t, err)
	assert.NoError(t, checkInvariants(s))
	assert.Equal(t, 2, s.Protocol())
	assert.Equal(t, LockInfo{
		Name: "delta", Held: true, Token: 9, Generation: 11, Claim: 9, Session: gsA, Node: "node-a", TTL: time.Second,
		RefreshedUnixNano: goldenStampAt(11), GrantedUnixNano: goldenStampAt(9),
	}, s.Lock("delta"))
	assert.Equal(t, []RevokedLease{{Name: "beta", Token: 6, Session: gsB, Grace: 20 * time.Second}}, s.Revoked())
	assert.Equal(t, []ClaimInfo{
		{Claim: 5, Session: gsB, Node: "node-b", Owner: "b-owner", TTL: 5 * time.Second, QueuedUnixNano: goldenStampAt(5)},
	}, s.Queue("alpha", 0))
	assert.Equal(t, data, mustSnapshot(t, s), "restore and snapshot changed the bytes")

	// The history still produces these bytes (I5 across builds).
	assert.Equal(t, data, goldenSnapshotV2(t), "the fixed history no longer gives snapshot-v2.bin")

	// And the restored state behaves: closing B withdraws its waiter, ends
	// its revoked lease as revoked and its other lease as closed.
	got, events, err := s.Apply(14, cmdClose(gsB, 4))
	require.NoError(t, err)
	assertResult(t, resOK(), got)
	assert.Equal(t, []Event{
		{Kind: EventWithdrawn, Name: "alpha", Session: gsB, Seq: 1, Claim: 5, TTL: 5 * time.Second, Reason: ReasonClosed},
		{Kind: EventEnded, Name: "beta", Session: gsB, Seq: 2, Claim: 6, Token: 6, Generation: 6, TTL: 5 * time.Second, Reason: ReasonRevoked},
		{Kind: EventEnded, Name: "epsilon", Session: gsB, Seq: 3, Claim: 12, Token: 12, Generation: 12, Reason: ReasonClosed},
		{Kind: EventSessionEnded, Session: gsB, TTL: 20 * time.Second, Reason: ReasonClosed},
	}, events)
}

// goldenBadSnapshots derives the snapshots Restore must reject from v1: an
// unknown version, format 2 without its protocol level, a cut and a broken
// invariant.
func goldenBadSnapshots(t *testing.T, v1 []byte) map[string][]byte {
	t.Helper()
	var v2 fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(v1, &v2))
	v2.Version = 2
	b2, err := marshalOpts.Marshal(&v2)
	require.NoError(t, err)
	var v3 fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(v1, &v3))
	v3.Version = 3
	b3, err := marshalOpts.Marshal(&v3)
	require.NoError(t, err)

	// Structurally invalid: alpha's waiter belongs to a session that is
	// not in the snapshot.
	var bad fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(v1, &bad))
	bad.Locks[0].Queue[0].Session = 0xdead
	bBad, err := marshalOpts.Marshal(&bad)
	require.NoError(t, err)

	return map[string][]byte{
		"snapshot-v3.bin":           b3,
		"snapshot-v2-no-level.bin":  b2,
		"snapshot-v1-truncated.bin": v1[:len(v1)-1],
		"snapshot-v1-corrupt.bin":   bBad,
	}
}

func TestRestore_GoldenRejected(t *testing.T) {
	if *update {
		for name, b := range goldenBadSnapshots(t, readGolden(t, "snapshot-v1.bin")) {
			writeFile(t, filepath.Join(goldenDir, name), b)
		}
	}
	cases := []struct {
		file string
		want error
	}{
		{"snapshot-v3.bin", ErrSnapshotVersion},
		{"snapshot-v2-no-level.bin", ErrCorrupt},
		{"snapshot-v1-truncated.bin", ErrCorrupt},
		{"snapshot-v1-corrupt.bin", ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			s, err := Restore(readGolden(t, tc.file))
			assert.ErrorIs(t, err, tc.want)
			assert.Nil(t, s)
		})
	}
	t.Run("version 3 is still a readable v1 shape", func(t *testing.T) {
		var snap fsmpb.Snapshot
		require.NoError(t, proto.Unmarshal(readGolden(t, "snapshot-v3.bin"), &snap))
		assert.Equal(t, uint32(3), snap.GetVersion())
	})
}

// TestRestore_GoldenTruncated cuts snapshot-v1.bin and snapshot-v2.bin at
// every length.
// Protobuf has no end marker: a cut between two top-level fields is a
// well-formed, smaller snapshot, and Restore cannot tell (the snapshot
// store's checksum must). Every other cut must fail with ErrCorrupt, and
// none may panic.
func TestRestore_GoldenTruncated(t *testing.T) {
	for _, file := range []string{"snapshot-v1.bin", "snapshot-v2.bin"} {
		t.Run(file, func(t *testing.T) { testTruncated(t, readGolden(t, file)) })
	}
}

func testTruncated(t *testing.T, data []byte) {
	boundaries := map[int]bool{0: true}
	for off := 0; off < len(data); {
		_, _, n := protowire.ConsumeField(data[off:])
		require.Positive(t, n)
		off += n
		boundaries[off] = true
	}
	for n := 1; n < len(data); n++ {
		s, err := Restore(data[:n])
		if boundaries[n] {
			if err == nil {
				assert.NoError(t, checkInvariants(s), "cut at %d", n)
			}
			continue
		}
		assert.ErrorIs(t, err, ErrCorrupt, "cut at %d of %d", n, len(data))
		assert.Nil(t, s, "cut at %d", n)
	}
}

// Fuzz seeds derived from the golden files. They are checked in under
// testdata/fuzz in Go's corpus format and regenerated by -update; hand-made
// entries (crashers) live next to them under other names.

func fuzzSeedFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

func parseFuzzSeedFile(t *testing.T, b []byte) []byte {
	t.Helper()
	header, rest, ok := strings.Cut(string(b), "\n")
	require.True(t, ok)
	require.Equal(t, "go test fuzz v1", header)
	lit, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
	require.True(t, ok, "corpus entry is not a []byte: %q", rest)
	lit, ok = strings.CutSuffix(lit, ")")
	require.True(t, ok)
	s, err := strconv.Unquote(lit)
	require.NoError(t, err)
	return []byte(s)
}

func generatedFuzzSeeds(t *testing.T) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	for _, g := range goldenCommands() {
		seeds["FuzzDecode/golden-"+strings.TrimSuffix(g.file, ".bin")] = readGolden(t, g.file)
	}
	seeds["FuzzDecode/garbage-empty"] = []byte{}
	seeds["FuzzDecode/garbage-ff"] = []byte{0xff, 0xff, 0xff}
	seeds["FuzzDecode/garbage-truncated"] = readGolden(t, "command-acquire.bin")[:12]
	v1 := readGolden(t, "snapshot-v1.bin")
	seeds["FuzzRestore/golden-snapshot-v1"] = v1
	seeds["FuzzRestore/golden-snapshot-v2"] = readGolden(t, "snapshot-v2.bin")
	for name, b := range goldenBadSnapshots(t, v1) {
		seeds["FuzzRestore/golden-"+strings.TrimSuffix(name, ".bin")] = b
	}
	seeds["FuzzRestore/garbage-empty"] = []byte{}
	seeds["FuzzRestore/garbage-version-only"] = []byte{0x08, 0x01}
	seeds["FuzzRestore/garbage-ff"] = []byte{0xff, 0x01, 0x02}
	seeds["FuzzRestore/fuzz-base"] = fuzzBase(t)
	return seeds
}

func TestFuzzCorpus_Golden(t *testing.T) {
	for name, want := range generatedFuzzSeeds(t) {
		path := filepath.Join("testdata", "fuzz", name)
		if *update {
			writeFile(t, path, fuzzSeedFile(want))
		}
		b, err := os.ReadFile(path)
		if !assert.NoError(t, err, "run go test ./fsm -run Golden -update") {
			continue
		}
		assert.True(t, bytes.Equal(want, parseFuzzSeedFile(t, b)), "%s is stale; run -update", path)
	}
}

// TestRestore_GoldenLevel3: format 2 at protocol level 3 (DESIGN.md,
// "Protocol 3"), the state the fuzzers start from: a client session with
// its secret and owner, and its keyed TTL lease made through s1's stream.
func TestRestore_GoldenLevel3(t *testing.T) {
	const file = "snapshot-v2-level3.bin"
	if *update {
		writeFile(t, filepath.Join(goldenDir, file), fuzzBase3(t))
	}
	data := readGolden(t, file)
	var snap fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(data, &snap))
	assert.Equal(t, uint32(2), snap.GetVersion())
	assert.Equal(t, uint32(3), snap.GetProtocol())
	var client *fsmpb.Session
	for _, ps := range snap.GetSessions() {
		if ps.GetId() == fuzzClient {
			client = ps
		}
	}
	require.NotNil(t, client, "the client session")
	assert.Equal(t, fuzzClientSecret, client.GetSecret())
	assert.Equal(t, "web", client.GetOwner())
	var keyed *fsmpb.Lock
	for _, l := range snap.GetLocks() {
		if l.GetName() == fuzzKeyedName {
			keyed = l
		}
	}
	require.NotNil(t, keyed, "the keyed lease")
	assert.True(t, proto.Equal(&fsmpb.Claim{
		Id: fuzzKeyedToken, Session: fuzzClient, Seq: 5, TtlNs: int64(time.Second), Key: fuzzLeaseKey, Stream: s1,
	}, keyed.GetHolder().GetClaim()), "claim: %v", keyed.GetHolder().GetClaim())

	s, err := Restore(data)
	require.NoError(t, err)
	assert.NoError(t, checkInvariants(s))
	assert.Equal(t, 3, s.Protocol())
	assert.Equal(t, data, mustSnapshot(t, s), "restore and snapshot changed the bytes")
	assert.Equal(t, data, fuzzBase3(t), "the fixed history no longer gives "+file)
}

// TestRestore_GoldenLevel4: format 2 at protocol level 4 (DESIGN.md,
// "Protocol 4"), the state the fuzzers start from: level 3's state with a
// token floor.
func TestRestore_GoldenLevel4(t *testing.T) {
	const file = "snapshot-v2-level4.bin"
	if *update {
		writeFile(t, filepath.Join(goldenDir, file), fuzzBase(t))
	}
	data := readGolden(t, file)
	var snap fsmpb.Snapshot
	require.NoError(t, proto.Unmarshal(data, &snap))
	assert.Equal(t, uint32(2), snap.GetVersion())
	assert.Equal(t, uint32(4), snap.GetProtocol())
	assert.Equal(t, uint64(fuzzFloor), snap.GetTokenFloor())

	s, err := Restore(data)
	require.NoError(t, err)
	assert.NoError(t, checkInvariants(s))
	assert.Equal(t, 4, s.Protocol())
	assert.Equal(t, data, mustSnapshot(t, s), "restore and snapshot changed the bytes")
	assert.Equal(t, data, fuzzBase(t), "the fixed history no longer gives "+file)
	res, _, err := s.Apply(fuzzIndex, cmdAcquire(s1, 100, "not-"+fuzzFloorName))
	require.NoError(t, err)
	assertResult(t, resGranted(fuzzFloor+1, fuzzIndex), res)
}
