package fsm

import "github.com/quorumlock/quorumlock/fsm/fsmpb"

// Protocol is the command set this build proposes and applies: 1, the
// commands of wire v1 and the term barrier (DESIGN.md). A new command type
// raises it.
const Protocol = 1

// Needs is the protocol that introduced cmd's type: a leader proposes cmd
// only once every voter speaks at least that.
func Needs(*fsmpb.Command) int { return 1 }
