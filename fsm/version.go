package fsm

import (
	"math"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Protocol is the command set this build proposes and applies: 2, the
// commands of wire v1, the term barrier, and SetProtocol, Revoke,
// EndRevoked and Adopt (DESIGN.md, "Protocol 2"). A new command type
// raises it.
const Protocol = 2

// Needs is the protocol that introduced cmd's type: a leader proposes cmd
// only once every voter speaks at least that. For SetProtocol it is the
// level set (at least 2, the protocol that introduced SetProtocol).
func Needs(cmd *fsmpb.Command) int {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_Revoke, *fsmpb.Command_EndRevoked, *fsmpb.Command_Adopt:
		return 2
	case *fsmpb.Command_SetProtocol:
		return max(2, int(min(op.SetProtocol.GetLevel(), math.MaxInt32)))
	}
	return 1
}
