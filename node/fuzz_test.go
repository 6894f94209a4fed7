package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// fuzzCallTimeout bounds each fuzzed request: a valid Acquire, KeepAlive or
// a commit on a loaded machine must not stall the fuzzer.
const fuzzCallTimeout = 2 * time.Second

// FuzzHandleRPC sends arbitrary bytes to the transport Handler of a real
// single-voter cluster node, as any stranger reaching the cluster port
// can. Properties: the node never panics; every reply is a
// nodepb.Response with a known status; a Propose of a command that fails
// fsm.Validate, or of a leader-only command, is answered STATUS_INVALID;
// and every command that reaches the log passes fsm.Validate.
//
// One node serves the whole fuzz process (a node per input would be far
// too slow), so valid requests take effect on it. Valid Join and Remove
// requests are not sent: one would change the shared node's configuration
// (a Remove of itself, or a Join of a voter that never answers, leaves it
// without a quorum, and every later input would only see NO_QUORUM).
// Membership changes are covered by the cluster membership tests; here
// every Join and Remove that validRequest refuses is still sent.
//
// Seeds: testdata/fuzz/FuzzHandleRPC, written by TestFuzzHandleRPC_seeds.
func FuzzHandleRPC(f *testing.F) {
	n, err := New(Config{ID: "fuzz", Addr: "127.0.0.1:0", Peers: []Peer{{ID: "fuzz"}}})
	require.NoError(f, err)
	f.Cleanup(func() { _ = n.Close() })
	logged := &logChecker{n: n}
	require.NoError(f, logged.check())

	f.Fuzz(func(t *testing.T, payload []byte) {
		req := new(nodepb.Request)
		decoded := proto.Unmarshal(payload, req) == nil
		if decoded && changesMembership(req) {
			t.Skip("a valid membership change would reconfigure the shared node")
		}
		ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
		defer cancel()
		reply, err := n.handleRPC(ctx, payload)
		require.NoError(t, err, "the reply must encode")
		resp := new(nodepb.Response)
		require.NoError(t, proto.Unmarshal(reply, resp), "the reply must decode")
		_, known := nodepb.Status_name[int32(resp.GetStatus())]
		require.True(t, known && resp.GetStatus() != nodepb.Status_STATUS_UNSPECIFIED, "status %v", resp.GetStatus())

		switch {
		case !decoded:
			require.Equal(t, nodepb.Status_STATUS_INVALID, resp.GetStatus(), "undecodable request: %s", resp.GetMessage())
		case req.GetOp() == nil:
			require.Equal(t, nodepb.Status_STATUS_INVALID, resp.GetStatus(), "request without an operation: %s", resp.GetMessage())
		case req.GetPropose() != nil && !proposable(req.GetPropose().GetCommand()):
			require.Equal(t, nodepb.Status_STATUS_INVALID, resp.GetStatus(), "propose of %v: %s", req.GetPropose().GetCommand(), resp.GetMessage())
		}
		require.NoError(t, logged.check())
	})
}

// changesMembership reports whether req is a Join or Remove that
// validRequest accepts.
func changesMembership(req *nodepb.Request) bool {
	switch req.GetOp().(type) {
	case *nodepb.Request_Join, *nodepb.Request_Remove:
		return validRequest(req) == nil
	}
	return false
}

// proposable is the fuzzer's own statement of what a peer may propose: a
// client's command (not an expiry, not the term barrier) that passes
// fsm.Validate once stamped as the leader stamps it.
func proposable(cmd *fsmpb.Command) bool {
	switch cmd.GetOp().(type) {
	case nil, *fsmpb.Command_ExpireSession, *fsmpb.Command_ExpireLease:
		return false
	}
	stamped := proto.CloneOf(cmd)
	stamped.StampUnixNano = time.Now().UnixNano() // as many varint bytes as the leader's stamp
	return fsm.Validate(stamped) == nil
}

// logChecker checks each command entry of a node's log once: it must
// decode and pass fsm.Validate.
type logChecker struct {
	n    *Node
	next uint64 // the first index not yet checked
}

var errLogGap = errors.New("log entry gone before it was checked")

func (c *logChecker) check() error {
	first, err := c.n.logs.FirstIndex()
	if err != nil {
		return err
	}
	last, err := c.n.logs.LastIndex()
	if err != nil {
		return err
	}
	if c.next > 0 && first > c.next {
		return fmt.Errorf("%w: entries %d to %d", errLogGap, c.next, first-1)
	}
	for i := max(c.next, first, 1); i <= last; i++ {
		var l raft.Log
		if err := c.n.logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("%w: entry %d: %w", errLogGap, i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := fsm.Decode(l.Data)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if err := fsm.Validate(cmd); err != nil {
			return fmt.Errorf("entry %d holds %v: %w", i, cmd, err)
		}
	}
	c.next = max(c.next, last+1)
	return nil
}
