package node

import (
	"errors"
	"fmt"
	"net"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// errLeaderOnly refuses, over RPC, a command only the leader itself
// decides to propose.
var errLeaderOnly = errors.New("node: leader-only command refused from a peer")

// maxAddrLen bounds a member address in a Join.
const maxAddrLen = 256

// validRequest checks what a peer sent before anything acts on it
// (DESIGN.md, "What enters the log"): a known operation, a Propose only of
// a command a client proposes, and a Join or Remove with sane fields. A
// proposed command is checked in full by fsm.Validate in proposeLocal.
func validRequest(req *nodepb.Request) error {
	switch op := req.GetOp().(type) {
	case *nodepb.Request_Propose:
		return peerMayPropose(op.Propose.GetCommand())
	case *nodepb.Request_KeepAlive:
		if secret := op.KeepAlive.GetSecret(); secret != nil && len(secret) != fsm.KeyLen {
			return fmt.Errorf("node: keep-alive: a secret of %d bytes, want %d", len(secret), fsm.KeyLen)
		}
		return nil
	case *nodepb.Request_ReadIndex:
		return nil
	case *nodepb.Request_Join:
		if err := validMemberID(op.Join.GetId()); err != nil {
			return err
		}
		addr := op.Join.GetAddr()
		if _, _, err := net.SplitHostPort(addr); err != nil || len(addr) > maxAddrLen {
			return fmt.Errorf("node: join: address %.64q is not host:port of at most %d bytes", addr, maxAddrLen)
		}
		return nil
	case *nodepb.Request_Remove:
		return validMemberID(op.Remove.GetId())
	default:
		return errors.New("node: request without a known operation")
	}
}

// peerMayPropose allows the valid commands a client proposes through the
// leader; expiries, the end of a revoke's grace, the protocol level and the
// term barrier come from the leader's own timers, protocol table and term,
// never from a peer.
func peerMayPropose(cmd *fsmpb.Command) error {
	switch cmd.GetOp().(type) {
	case *fsmpb.Command_OpenSession, *fsmpb.Command_CloseSession, *fsmpb.Command_Acquire,
		*fsmpb.Command_Release, *fsmpb.Command_Refresh, *fsmpb.Command_Cancel,
		*fsmpb.Command_Revoke, *fsmpb.Command_Adopt, *fsmpb.Command_FloorToken, *fsmpb.Command_Proclaim:
		return fsm.Validate(cmd) // again in proposeLocal; here so that followers refuse it alike
	case *fsmpb.Command_ExpireSession, *fsmpb.Command_ExpireLease,
		*fsmpb.Command_EndRevoked, *fsmpb.Command_SetProtocol:
		return fmt.Errorf("%w: %T", errLeaderOnly, cmd.GetOp())
	case nil:
		if cmd == nil {
			return fmt.Errorf("%w: propose without a command", fsm.ErrInvalid)
		}
		if cmd.GetIgnorable() && fsm.Validate(cmd) == nil {
			return fmt.Errorf("%w: term barrier", errLeaderOnly)
		}
		return fsm.Validate(cmd) // names the unknown operation
	default:
		return fmt.Errorf("%w: %T", fsm.ErrUnknownCommand, cmd.GetOp())
	}
}

func validMemberID(id string) error {
	if id == "" || len(id) > fsm.MaxNodeIDLen {
		return fmt.Errorf("node: member ID of %d bytes: 1 to %d", len(id), fsm.MaxNodeIDLen)
	}
	return nil
}
