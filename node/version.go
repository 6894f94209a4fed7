package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// ErrUnsupported: a command of a protocol that not every voter speaks yet
// (DESIGN.md, "Versions and rolling upgrades"). It never entered the log.
// It wraps lock.ErrUnsupported.
var ErrUnsupported = fmt.Errorf("node: command not supported by every voter yet: %w", lock.ErrUnsupported)

// protocols is what the leader heard each member speak: the protocol of
// its last RPC. A member not heard from counts as protocol 1, the oldest.
type protocols struct {
	mu   sync.Mutex
	seen map[string]int
}

// maxHeard bounds the members protocols remembers: from is whatever the
// sender claims, and a stranger must not grow the map without bound.
const maxHeard = 4096

func (p *protocols) heard(from string, protocol uint32) {
	if from == "" || len(from) > fsm.MaxNodeIDLen {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]int{}
	}
	if _, known := p.seen[from]; !known && len(p.seen) >= maxHeard {
		return
	}
	p.seen[from] = int(min(max(protocol, 1), 1<<16))
}

func (p *protocols) of(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.seen[id]; ok {
		return v
	}
	return 1
}

// playedBuild is a build of another protocol that a test makes a node play
// (Config.played, PlayProtocol).
type playedBuild struct {
	protocol int
	needs    func(*fsmpb.Command) int
}

// supported refuses cmd if it needs a protocol above both the level the
// state has committed to and the lowest that a current voter speaks (this
// node counts with its own). A command at or below the committed level
// needs no look at the voters: every replica that applied the SetProtocol
// speaks it.
func (n *Node) supported(cmd *fsmpb.Command) error {
	need := (*n.needs.Load())(cmd)
	if need <= 1 {
		return nil // every build speaks protocol 1
	}
	if need <= n.committedProtocol() {
		return nil
	}
	lowest, voter, err := n.lowestVoter()
	if err != nil {
		return err
	}
	if lowest < need {
		return fmt.Errorf("%w: %w: it needs protocol %d and voter %s speaks %d", errFatal, ErrUnsupported, need, voter, lowest)
	}
	return nil
}

// committedProtocol is the protocol level of this node's applied state.
func (n *Node) committedProtocol() int {
	var level int
	n.bridge.read(func(st *fsm.State) { level = st.Protocol() })
	return level
}

// lowestVoter is the lowest protocol a current voter speaks, as this node
// (the leader) heard it, and that voter.
func (n *Node) lowestVoter() (int, raft.ServerID, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, "", fmt.Errorf("%w: %w", errNotLeader, err)
	}
	lowest, voter := int(n.protocol.Load()), raft.ServerID(n.cfg.ID)
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter || s.ID == raft.ServerID(n.cfg.ID) {
			continue
		}
		if v := n.peers.of(string(s.ID)); v < lowest {
			lowest, voter = v, s.ID
		}
	}
	return lowest, voter, nil
}

// runUpgrades raises the committed protocol level, while this node leads,
// whenever it is woken (n.upgrade): when it hears from a member, after it
// removed one. onLeadership raises it too, after the term barrier.
func (n *Node) runUpgrades() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.upgrade:
			if n.leading.isOpen() {
				n.raiseProtocol()
			}
		}
	}
}

// raiseProtocol proposes SetProtocol{level} if every voter speaks a level
// above the committed one: the lowest they speak, at most what this build
// applies. A failure (this node does not lead, no quorum) waits for the
// next wake-up.
func (n *Node) raiseProtocol() {
	level := n.committedProtocol()
	if level >= fsm.Protocol {
		return // nothing this build could raise it to
	}
	lowest, _, err := n.lowestVoter()
	target := min(lowest, fsm.Protocol)
	if err != nil || target <= level {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, cleanupTimeout)
	defer cancel()
	cmd := &fsmpb.Command{Op: &fsmpb.Command_SetProtocol{SetProtocol: &fsmpb.SetProtocol{Level: uint32(target)}}}
	if _, _, err := n.proposeLocal(ctx, cmd); err != nil {
		n.log.Debug("raising the protocol level failed; trying again when a member is heard", "level", target, "error", err)
		return
	}
	n.log.Info("every voter speaks a newer protocol: level raised", "from", level, "to", target)
}

// halt is the bridge's onHalt: the node met a log entry it cannot apply.
// It says so at Error (an operator must upgrade this node) and aborts the
// node, on its own goroutine: the bridge calls it holding its lock.
func (n *Node) halt(err error) {
	n.halted.Store(&err)
	n.log.Error("stopping: the replicated log holds an entry this node cannot apply", "error", err, "protocol", n.protocol.Load())
	go func() { _ = n.Abort() }()
}

// haltErr is why the node halted (see halt), or nil.
func (n *Node) haltErr() error {
	if p := n.halted.Load(); p != nil {
		return *p
	}
	return nil
}
