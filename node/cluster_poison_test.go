package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
	"github.com/quorumlock/quorumlock/node/nodepb"
	"github.com/quorumlock/quorumlock/transport"
)

// TestCluster_PoisonRequestsRefused: one Propose whose Command had no
// operation used to be committed by the leader and then panic every
// replica's bridge, on every restart too (issue 12 item 1; fails without
// fsm.Validate in proposeLocal: the test binary dies). Every malformed
// request shape, sent by a stranger to the leader and to a follower, is
// refused as INVALID; afterwards every replica still serves, and every
// command in every replica's log passes fsm.Validate.
func TestCluster_PoisonRequestsRefused(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	leader := c.Leader()
	follower := c.Follower()

	stranger, err := transport.New(transport.Config{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, stranger.Close()) }()

	for _, p := range poisonRequests(t) {
		for _, i := range []int{leader, follower} {
			reply, err := stranger.Call(ctx, c.Addr(i), p.payload)
			require.NoError(t, err, "%s to n%d: the node must answer, not drop the connection", p.what, i+1)
			resp := new(nodepb.Response)
			require.NoError(t, proto.Unmarshal(reply, resp), "%s to n%d", p.what, i+1)
			assert.Equal(t, nodepb.Status_STATUS_INVALID, resp.GetStatus(), "%s to n%d: %s", p.what, i+1, resp.GetMessage())
		}
	}

	for i := range c.Size() {
		l, err := c.NewLocker(ctx, i)
		require.NoError(t, err, "n%d after the poison requests", i+1)
		lease, err := l.Acquire(ctx, "after-poison")
		require.NoError(t, err, "n%d after the poison requests", i+1)
		require.NoError(t, lease.Release(ctx))
		require.NoError(t, l.Close())
	}
	for i := range c.Size() {
		cmds, err := node.LogCommands(c.Node(i))
		require.NoError(t, err)
		require.NotEmpty(t, cmds)
		for _, cmd := range cmds {
			assert.NoError(t, fsm.Validate(cmd), "n%d's log holds %v", i+1, cmd)
		}
	}
}

type poison struct {
	what    string
	payload []byte
}

// poisonRequests are the malformed requests a stranger can send: every
// shape a peer's request can take that must not reach the log or act.
func poisonRequests(t *testing.T) []poison {
	t.Helper()
	propose := func(cmd *fsmpb.Command) *nodepb.Request {
		return &nodepb.Request{Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}}
	}
	unknownField := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)
	withUnknown := func(cmd *fsmpb.Command) *fsmpb.Command {
		cmd.ProtoReflect().SetUnknown(unknownField)
		return cmd
	}
	acquire := func(a *fsmpb.Acquire) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: a}}
	}
	good := &fsmpb.Request{Session: 7, Seq: 1}
	reqs := []struct {
		what string
		req  *nodepb.Request
	}{
		{"request without an operation", &nodepb.Request{}},
		{"propose without a command", propose(nil)},
		{"propose of an empty command", propose(&fsmpb.Command{})},
		{"propose of an unknown operation", propose(withUnknown(&fsmpb.Command{}))},
		{"propose of an ignorable unknown operation", propose(withUnknown(&fsmpb.Command{Ignorable: true}))},
		{"propose of the term barrier", propose(&fsmpb.Command{Ignorable: true})},
		{"propose of ExpireSession", propose(&fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: 7}}})},
		{"propose of ExpireLease", propose(&fsmpb.Command{Op: &fsmpb.Command_ExpireLease{ExpireLease: &fsmpb.ExpireLease{Name: "a", Token: 1, Generation: 1}}})},
		{"propose of EndRevoked", propose(&fsmpb.Command{Op: &fsmpb.Command_EndRevoked{EndRevoked: &fsmpb.EndRevoked{Name: "a", Token: 1}}})},
		{"propose of SetProtocol", propose(&fsmpb.Command{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: 2}}})},
		{"propose of a Revoke of token 0", propose(&fsmpb.Command{Op: &fsmpb.Command_Revoke{Revoke: &fsmpb.Revoke{Req: good, Name: "a"}}})},
		{"propose of an Adopt without a name", propose(&fsmpb.Command{Op: &fsmpb.Command_Adopt{Adopt: &fsmpb.Adopt{Req: good, Token: 1}}})},
		{"propose of an Acquire with an empty name", propose(acquire(&fsmpb.Acquire{Req: good}))},
		{"propose of an Acquire with a control character", propose(acquire(&fsmpb.Acquire{Req: good, Name: "a\x01"}))},
		{"propose of an Acquire without a request", propose(acquire(&fsmpb.Acquire{Name: "a"}))},
		{"propose of an Acquire with a 1 ns TTL", propose(acquire(&fsmpb.Acquire{Req: good, Name: "a", TtlNs: 1}))},
		{"propose of an Acquire with an unknown field", propose(withUnknown(acquire(&fsmpb.Acquire{Req: good, Name: "a"})))},
		{"propose of an OpenSession with a 1 ns TTL", propose(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: good, TtlNs: 1}}})},
		{"propose of an OpenSession for 1000 hours", propose(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: good, TtlNs: int64(1000 * time.Hour)}}})},
		{"propose of an OpenSession of session 0", propose(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: &fsmpb.Request{}, TtlNs: int64(time.Second)}}})},
		{"propose of a Release of token 0", propose(&fsmpb.Command{Op: &fsmpb.Command_Release{Release: &fsmpb.Release{Req: good, Name: "a"}}})},
		{"propose of a Cancel of claim 0", propose(&fsmpb.Command{Op: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{Req: good, Name: "a"}}})},
		{"join without an ID", &nodepb.Request{Op: &nodepb.Request_Join{Join: &nodepb.Join{Addr: "127.0.0.1:1"}}}},
		{"join with an address that is not host:port", &nodepb.Request{Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: "x", Addr: "nowhere"}}}},
		{"remove without an ID", &nodepb.Request{Op: &nodepb.Request_Remove{Remove: &nodepb.Remove{}}}},
		{"keep-alive with a 3-byte secret", &nodepb.Request{Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: 7, Secret: []byte("abc")}}}},
		{"propose of an OpenSession with a 3-byte secret", propose(&fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{Req: good, TtlNs: int64(time.Second), Secret: []byte("abc")}}})},
		{"propose of an Acquire for a client session without a key", propose(acquire(&fsmpb.Acquire{Req: good, Name: "a", ForSession: 9, Secret: make([]byte, 16)}))},
	}
	out := []poison{
		{"bytes that are not a request", []byte{0xff, 0xff, 0xff}},
	}
	for _, r := range reqs {
		b, err := proto.Marshal(r.req)
		require.NoError(t, err, r.what)
		out = append(out, poison{r.what, b})
	}
	return out
}

// TestCluster_LimitReachesFollower: the leader refuses a forwarded command
// over a limit with STATUS_LIMIT, and the follower's caller sees
// lock.ErrLimit (error identity does not cross the wire by itself).
func TestCluster_LimitReachesFollower(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 3, Edit: func(_ int, cfg *node.Config) {
		cfg.Limits = node.Limits{NamesPerSession: 1}
	}})
	ctx := clusterCtx(t)
	l, err := c.NewLocker(ctx, c.Follower())
	require.NoError(t, err)
	defer func() { assert.NoError(t, l.Close()) }()
	held, err := l.Acquire(ctx, "first")
	require.NoError(t, err)
	_, err = l.Acquire(ctx, "second")
	require.ErrorIs(t, err, lock.ErrLimit)
	require.NoError(t, held.Release(ctx))
	second, err := l.Acquire(ctx, "second")
	require.NoError(t, err, "within the limit again")
	require.NoError(t, second.Release(ctx))
}
