package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// ErrUnsupported: a command of a protocol that not every voter speaks yet
// (DESIGN.md, "Versions and rolling upgrades"). It never entered the log.
var ErrUnsupported = errors.New("node: command not supported by every voter yet")

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

// supported refuses cmd if it needs a protocol above the lowest that a
// current voter speaks (this node counts with its own).
func (n *Node) supported(cmd *fsmpb.Command) error {
	need := (*n.needs.Load())(cmd)
	if need <= 1 {
		return nil // every build speaks protocol 1
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: %w", errNotLeader, err)
	}
	for _, s := range f.Configuration().Servers {
		v := int(n.protocol.Load())
		if s.ID != raft.ServerID(n.cfg.ID) {
			v = n.peers.of(string(s.ID))
		}
		if s.Suffrage == raft.Voter && v < need {
			return fmt.Errorf("%w: %w: it needs protocol %d and voter %s speaks %d", errFatal, ErrUnsupported, need, s.ID, v)
		}
	}
	return nil
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
