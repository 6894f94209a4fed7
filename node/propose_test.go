package node

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// TestNode_ProposeUnencodableFailsAtOnce: a command that passes
// fsm.Validate but that fsm.Encode refuses (an owner that is not UTF-8;
// lock.NewOptions refuses it first on every public path) fails at once as
// errFatal. It used to be retried until ctx ended and then reported as
// lock.ErrNoQuorum, so an Acquire without a deadline never returned.
func TestNode_ProposeUnencodableFailsAtOnce(t *testing.T) {
	n := newNode(t, Config{})
	ctx := testCtx(t)
	cmd := &fsmpb.Command{Op: &fsmpb.Command_Acquire{Acquire: &fsmpb.Acquire{
		Req: &fsmpb.Request{Session: 1, Seq: 1}, Name: "a", Owner: "\xff",
	}}}
	require.NoError(t, fsm.Validate(cmd), "the case needs a command that only Encode refuses")

	_, err := n.propose(ctx, cmd)
	require.ErrorIs(t, err, errFatal)
	require.NotErrorIs(t, err, lock.ErrNoQuorum)
	require.NoError(t, ctx.Err(), "propose must not wait for ctx to end")
}
