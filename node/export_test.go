package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
)

// Exported for the cluster tests of package node_test: they run on
// internal/testcluster, which imports node, so they cannot be in package
// node. Unexported identifiers reached: Node.wallSkew, Node.raft,
// Node.trans, Node.mu, Node.clients,
// Node.def, client.sess, Node.expireLocal, Config.played, Node.bridge.

// SetWallSkew makes the wall clock n stamps commands with (and reads
// leader stamps against) run d off the real one; 0 restores it.
func SetWallSkew(n *Node, d time.Duration) { n.wallSkew.Store(int64(d)) }

// RaftOf returns n's Raft instance.
func RaftOf(n *Node) *raft.Raft { return n.raft }

// CloseTransport closes n's cluster transport: n is cut off from its peers
// while its Raft keeps running.
func CloseTransport(n *Node) error { return n.trans.Close() }

// ClientCount is the number of clients (sessions) registered with n.
func ClientCount(n *Node) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.clients)
}

// SessionOf returns the current session of l, a Locker of package node
// (a Node or one NewLocker made).
func SessionOf(l lock.Locker) uint64 {
	c, ok := l.(*client)
	if n, isNode := l.(*Node); isNode {
		c, ok = n.def, true
	}
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// ExpireSession hands n's expiry worker an ExpireSession for id, as a
// fired session timer would.
func ExpireSession(n *Node, id uint64) error {
	return n.expireLocal(&fsmpb.Command{Op: &fsmpb.Command_ExpireSession{ExpireSession: &fsmpb.ExpireSession{Session: id}}})
}

// QueuedClaims is the number of Acquire calls of Locker l (made by
// NewLocker) that wait for a grant with their claim recorded.
func QueuedClaims(l lock.Locker) int {
	c := l.(*client)
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, w := range c.waiters {
		if w.claim != 0 {
			k++
		}
	}
	return k
}

// SignalLost tells Locker l (made by NewLocker) that the store lost its
// current session: its keep-alive loop reopens one.
func SignalLost(l lock.Locker) {
	c := l.(*client)
	c.mu.Lock()
	id := c.sess
	c.mu.Unlock()
	c.signalLost(id)
}

// LogCommands decodes every command entry in n's log store.
func LogCommands(n *Node) ([]*fsmpb.Command, error) {
	first, err := n.logs.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		return nil, err
	}
	var cmds []*fsmpb.Command
	for i := max(first, 1); i <= last; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := fsm.Decode(l.Data)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// PlayProtocol makes n announce protocol v and believe that each command
// needs the protocol needs returns: a build older or newer than this one.
func PlayProtocol(n *Node, v int, needs func(*fsmpb.Command) int) {
	n.protocol.Store(int32(v))
	n.needs.Store(&needs)
}

// PlayProtocolFromStart makes the node cfg starts play, from its start, a
// build that announces protocol v and believes that each command needs the
// protocol needs returns.
func PlayProtocolFromStart(cfg *Config, v int, needs func(*fsmpb.Command) int) {
	cfg.played = &playedBuild{protocol: v, needs: needs}
}

// RevokedNames lists the names whose lease n's applied state shows revoked.
func RevokedNames(n *Node) []string {
	var names []string
	n.bridge.read(func(st *fsm.State) {
		for _, r := range st.Revoked() {
			names = append(names, r.Name)
		}
	})
	return names
}

// HoldApplies stops n applying committed entries (its FSM goroutine waits
// before its next batch) until the returned func is called.
func HoldApplies(n *Node) (release func()) {
	gate := make(chan struct{})
	hold := func() { <-gate }
	n.bridge.beforeApply.Store(&hold)
	var once sync.Once
	return func() {
		once.Do(func() {
			n.bridge.beforeApply.Store(nil)
			close(gate)
		})
	}
}

// PendingCalls is the number of RPCs n has in flight.
func PendingCalls(n *Node) int64 { return int64(n.trans.Stats().PendingCalls) }
