package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node/nodepb"
	"github.com/quorumlock/quorumlock/transport"
)

// TestCluster_ReplayedProposeAppliesOnce: a forwarded Propose that arrives
// twice — a follower's retry after a lost reply, or a replay by anyone on
// the network — takes effect once (issue 12 item 6). A session opened over
// a raw transport proposes one Acquire; sent again to the leader, and again
// to the next leader after the first one crashed, it answers the first
// grant's result and the name keeps one holder and no waiter. The same
// Acquire under a new seq does queue, which is what a replay that applied
// again would have done.
func TestCluster_ReplayedProposeAppliesOnce(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)
	stranger, err := transport.New(transport.Config{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, stranger.Close()) }()

	const sess = 0x5eed_0012
	open := &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: sess, Seq: 1}, TtlNs: int64(time.Minute), Node: "replayer",
	}}}
	require.Equal(t, fsmpb.Code_CODE_OK, proposeToLeader(ctx, t, c, stranger, open).GetCode())
	acquire := func(seq uint64) *fsmpb.Command {
		return &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
			Req: &fsmpb.Request{Session: sess, Seq: seq, AckedBelow: 2}, Name: "replayed", Owner: "replayer",
		}}}
	}

	first := proposeToLeader(ctx, t, c, stranger, acquire(2))
	require.Equal(t, fsmpb.Code_CODE_GRANTED, first.GetCode())
	requireOneHolder := func(when string) {
		t.Helper()
		for _, i := range c.Live() {
			info, err := c.Node(i).Inspect(ctx, "replayed")
			require.NoError(t, err, "%s, n%d", when, i+1)
			info.Since = 0 // the age of the grant, whatever it is
			assert.Equal(t, lock.Info{
				Name: "replayed", Held: true, Token: first.GetToken(), Owner: "replayer",
				Kind: lock.KindSession, Holder: fmt.Sprintf("%016x", sess), Node: "replayer", Type: lock.TypeMutex,
			}, info, "%s, n%d", when, i+1)
		}
	}
	requireOneHolder("after the first Acquire")

	again := proposeToLeader(ctx, t, c, stranger, acquire(2))
	assert.True(t, proto.Equal(first, again), "the replay answers %v, the first Acquire %v", again, first)
	requireOneHolder("after the replay")

	c.Kill(c.Leader())
	again = proposeToLeader(ctx, t, c, stranger, acquire(2))
	assert.True(t, proto.Equal(first, again), "the replay to the next leader answers %v, the first Acquire %v", again, first)
	requireOneHolder("after the replay to the next leader")

	// Control: the same Acquire under a new seq is a second claim.
	second := proposeToLeader(ctx, t, c, stranger, acquire(3))
	assert.Equal(t, fsmpb.Code_CODE_QUEUED, second.GetCode())
	info, err := c.Node(c.Leader()).Inspect(ctx, "replayed")
	require.NoError(t, err)
	assert.Equal(t, 1, info.Waiters, "a new seq queues")

	closeSess := &fsmpb.Command{Op: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{
		Req: &fsmpb.Request{Session: sess, Seq: 4},
	}}}
	assert.Equal(t, fsmpb.Code_CODE_OK, proposeToLeader(ctx, t, c, stranger, closeSess).GetCode())
}

// proposeToLeader sends cmd as a Propose from a stranger's transport to the
// leader, again while the node it takes for the leader answers NOT_LEADER
// (an election under way), and returns the result of an OK answer.
func proposeToLeader(ctx context.Context, t *testing.T, c *testcluster.Cluster, from *transport.Transport, cmd *fsmpb.Command) *fsmpb.Result {
	t.Helper()
	payload, err := proto.Marshal(&nodepb.Request{Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}})
	require.NoError(t, err)
	for {
		reply, err := from.Call(ctx, c.Addr(c.Leader()), payload)
		require.NoError(t, err)
		resp := new(nodepb.Response)
		require.NoError(t, proto.Unmarshal(reply, resp))
		if resp.GetStatus() != nodepb.Status_STATUS_NOT_LEADER {
			require.Equal(t, nodepb.Status_STATUS_OK, resp.GetStatus(), resp.GetMessage())
			return resp.GetResult()
		}
		select {
		case <-ctx.Done():
			require.NoError(t, ctx.Err(), "no leader answered")
		case <-time.After(20 * time.Millisecond): // poll: ctx bounds it
		}
	}
}
