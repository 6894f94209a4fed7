package node

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the generated seeds of testdata/fuzz/FuzzHandleRPC")

// TestFuzzHandleRPC_seeds: the checked-in seed corpus of FuzzHandleRPC is
// what rpcSeeds encodes (go test ./node -run FuzzHandleRPC_seeds
// -update-seeds rewrites it). Inputs the fuzzer saved there under other
// names (crashers) are left alone.
func TestFuzzHandleRPC_seeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzHandleRPC")
	for name, payload := range rpcSeeds(t) {
		path := filepath.Join(dir, name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", payload)
		if *updateSeeds {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run go test ./node -run FuzzHandleRPC_seeds -update-seeds")
		assert.Equal(t, string(want), string(got), "%s is stale", path)
	}
}

// rpcSeeds are valid requests of every operation and the malformed shapes
// of request a stranger can send, by file name.
func rpcSeeds(t *testing.T) map[string][]byte {
	t.Helper()
	const session, name = 0x7e57, "orders/42"
	rq := func(seq uint64) *fsmpb.Request { return &fsmpb.Request{Session: session, Seq: seq} }
	propose := func(cmd *fsmpb.Command) *nodepb.Request {
		return &nodepb.Request{TimeoutNs: int64(time.Second), Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}}
	}
	acquire := func(a *fsmpb.Acquire) *nodepb.Request {
		return propose(&fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}})
	}
	openSession := func(o *fsmpb.OpenSession) *nodepb.Request {
		return propose(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: o}})
	}
	unknownField := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)
	withUnknown := func(cmd *fsmpb.Command) *fsmpb.Command {
		cmd.ProtoReflect().SetUnknown(unknownField)
		return cmd
	}
	reqs := map[string]*nodepb.Request{
		// Valid requests of every operation.
		"valid-open-session":    openSession(&fsmpb.OpenSession{Req: rq(0), TtlNs: int64(10 * time.Second), Node: "peer"}),
		"valid-acquire":         acquire(&fsmpb.Acquire{Req: rq(1), Name: name, Owner: "worker-7"}),
		"valid-try-acquire-ttl": acquire(&fsmpb.Acquire{Req: rq(2), Name: name, TtlNs: int64(30 * time.Second), Try: true}),
		"valid-release":         propose(&fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: rq(3), Name: name, Token: 1}}}),
		"valid-refresh":         propose(&fsmpb.Command{Op: &fsmpb.Command_Refresh{Refresh: &fsmpb.Refresh{Req: rq(4), Name: name, Token: 1}}}),
		"valid-cancel":          propose(&fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: rq(5), Name: name, Claim: 1}}}),
		"valid-close-session":   propose(&fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{Req: rq(6)}}}),
		"valid-keep-alive":      {TimeoutNs: int64(time.Second), Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: session}}},
		"valid-read-index":      {Op: &nodepb.Request_ReadIndex{ReadIndex: &nodepb.ReadIndex{}}},
		"valid-join":            {Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: "n2", Addr: "127.0.0.1:1", Voter: true}}},
		"valid-remove":          {Op: &nodepb.Request_Remove{Remove: &nodepb.Remove{Id: "n2"}}},

		// Malformed shapes.
		"no-operation":               {TimeoutNs: int64(time.Second)},
		"negative-timeout":           {TimeoutNs: -1, Op: &nodepb.Request_ReadIndex{ReadIndex: &nodepb.ReadIndex{}}},
		"propose-no-command":         propose(nil),
		"propose-empty-command":      propose(&fsmpb.Command{}),
		"propose-unknown-operation":  propose(withUnknown(&fsmpb.Command{})),
		"propose-ignorable-unknown":  propose(withUnknown(&fsmpb.Command{Ignorable: true})),
		"propose-term-barrier":       propose(&fsmpb.Command{Ignorable: true}),
		"propose-expire-session":     propose(&fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: session}}}),
		"propose-expire-lease":       propose(&fsmpb.Command{Op: &fsmpb.Command_ExpireLease{ExpireLease: &fsmpb.ExpireLease{Name: name, Token: 1, Generation: 1}}}),
		"acquire-empty-name":         acquire(&fsmpb.Acquire{Req: rq(1)}),
		"acquire-control-character":  acquire(&fsmpb.Acquire{Req: rq(1), Name: "a\x01"}),
		"acquire-oversize-name":      acquire(&fsmpb.Acquire{Req: rq(1), Name: strings.Repeat("n", fsm.MaxNameLen+1)}),
		"acquire-no-request":         acquire(&fsmpb.Acquire{Name: name}),
		"acquire-1ns-ttl":            acquire(&fsmpb.Acquire{Req: rq(1), Name: name, TtlNs: 1}),
		"acquire-unknown-field":      propose(withUnknown(&fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{Req: rq(1), Name: name}}})),
		"open-session-1ns":           openSession(&fsmpb.OpenSession{Req: rq(0), TtlNs: 1}),
		"open-session-1000h":         openSession(&fsmpb.OpenSession{Req: rq(0), TtlNs: int64(1000 * time.Hour)}),
		"open-session-0":             openSession(&fsmpb.OpenSession{Req: &fsmpb.Request{}, TtlNs: int64(time.Second)}),
		"release-token-0":            propose(&fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: rq(3), Name: name}}}),
		"cancel-claim-0":             propose(&fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: rq(5), Name: name}}}),
		"join-no-id":                 {Op: &nodepb.Request_Join{Join: &nodepb.Join{Addr: "127.0.0.1:1"}}},
		"join-address-not-host-port": {Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: "x", Addr: "nowhere"}}},
		"remove-no-id":               {Op: &nodepb.Request_Remove{Remove: &nodepb.Remove{}}},
		"keep-alive-session-0":       {Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{}}},
		"keep-alive-unknown-session": {Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: 1}}},
		"keep-alive-short-secret":    {Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: 1, Secret: []byte{1}}}},
		"keep-alive-wrong-secret":    {Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: session, Secret: make([]byte, 16)}}},
		"valid-floor-token":          propose(&fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{Req: rq(7), Name: name, Floor: 1 << 40}}}),
		"floor-token-above-max":      propose(&fsmpb.Command{Op: &fsmpb.Command_FloorToken{FloorToken: &fsmpb.FloorToken{Req: rq(7), Name: name, Floor: fsm.MaxTokenFloor + 1}}}),

		// Protocol 5: lock types.
		"valid-acquire-permit":   acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_SEMAPHORE, Limit: 3}),
		"valid-acquire-read":     acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_READ_WRITE, Mode: fsmpb.Mode_MODE_READ}),
		"valid-campaign":         acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_ELECTION, Value: "n1:8080"}),
		"valid-proclaim":         propose(&fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{Req: rq(9), Name: name, Token: 1, Value: "n1:9090"}}}),
		"permit-limit-0":         acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_SEMAPHORE}),
		"permit-limit-above-max": acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_SEMAPHORE, Limit: fsm.MaxPermits + 1}),
		"read-write-no-mode":     acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType_LOCK_TYPE_READ_WRITE}),
		"mutex-with-value":       acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Value: "v"}),
		"unknown-lock-type":      acquire(&fsmpb.Acquire{Req: rq(8), Name: name, Type: fsmpb.LockType(99)}),
		"proclaim-oversize":      propose(&fsmpb.Command{Op: &fsmpb.Command_Proclaim{Proclaim: &fsmpb.Proclaim{Req: rq(9), Name: name, Token: 1, Value: strings.Repeat("v", fsm.MaxOwnerLen+1)}}}),
	}
	seeds := map[string][]byte{
		"garbage-empty": {},
		"garbage-ff":    {0xff, 0xff, 0xff},
	}
	for file, req := range reqs {
		b, err := proto.Marshal(req)
		require.NoError(t, err, file)
		seeds[file] = b
	}
	seeds["truncated-acquire"] = seeds["valid-acquire"][:len(seeds["valid-acquire"])/2]
	return seeds
}
