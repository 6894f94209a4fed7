package fsm

import (
	"math"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// Protocol is the command set this build proposes and applies: 5, the
// commands of wire v1, the term barrier, SetProtocol, Revoke, EndRevoked
// and Adopt (DESIGN.md, "Protocol 2"), client sessions and lease keys
// (DESIGN.md, "Protocol 3"), the token floor (DESIGN.md, "Protocol 4"),
// and lock types: semaphores, read-write locks and elections (DESIGN.md,
// "Protocol 5"). A new command type or field raises it.
const Protocol = 5

// Needs is the protocol that introduced cmd's type or a field it sets: a
// leader proposes cmd only once every voter speaks at least that. For
// SetProtocol it is the level set (at least 2, the protocol that
// introduced SetProtocol).
func Needs(cmd *fsmpb.Command) int {
	if needs5(cmd) {
		return 5
	}
	if needs3(cmd) {
		return 3
	}
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_FloorToken:
		return 4
	case *fsmpb.Command_Revoke, *fsmpb.Command_EndRevoked, *fsmpb.Command_Adopt:
		return 2
	case *fsmpb.Command_SetProtocol:
		return max(2, int(min(op.SetProtocol.GetLevel(), math.MaxInt32)))
	}
	return 1
}

// needs5 reports whether cmd is a Proclaim or an Acquire that sets a
// field of protocol 5.
func needs5(cmd *fsmpb.Command) bool {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_Proclaim:
		return true
	case *fsmpb.Command_Acquire:
		c := op.Acquire
		return c.GetType() != 0 || c.GetLimit() != 0 || c.GetMode() != 0 || c.GetValue() != ""
	}
	return false
}

// needs3 reports whether cmd sets a field of protocol 3.
func needs3(cmd *fsmpb.Command) bool {
	switch op := cmd.GetOp().(type) {
	case *fsmpb.Command_OpenSession:
		return op.OpenSession.GetSecret() != nil || op.OpenSession.GetOwner() != ""
	case *fsmpb.Command_CloseSession:
		return op.CloseSession.GetForSession() != 0 || op.CloseSession.GetSecret() != nil
	case *fsmpb.Command_Acquire:
		c := op.Acquire
		return c.GetForSession() != 0 || c.GetSecret() != nil || c.GetKey() != nil
	case *fsmpb.Command_Release:
		return op.Release.GetKey() != nil
	case *fsmpb.Command_Refresh:
		return op.Refresh.GetKey() != nil
	case *fsmpb.Command_Adopt:
		return op.Adopt.GetKey() != nil
	}
	return false
}
