package node

import (
	"sync"

	"github.com/hashicorp/raft"
)

// heartbeatGuard is Raft's network transport with its heartbeat fast path
// fenced against the node's shutdown.
//
// hashicorp/raft handles a heartbeat on the connection's goroutine, outside
// its main loop: processHeartbeat checks for shutdown once and then writes
// the term to the stable store. A heartbeat that passes that check just
// before Shutdown completes therefore runs on after it, and if the node has
// meanwhile closed its bolt store, Raft panics ("failed to save current
// term: database not open"; seen once in a full-suite run). The guard runs
// every heartbeat under a read lock; quiesce takes the write lock, so it
// waits for the heartbeats in flight, and refuses those that come after.
type heartbeatGuard struct {
	*raft.NetworkTransport
	mu     sync.RWMutex
	closed bool
}

// SetHeartbeatHandler implements raft.Transport.
func (g *heartbeatGuard) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.closed {
			rpc.Respond(nil, raft.ErrRaftShutdown)
			return
		}
		cb(rpc)
	})
}

// quiesce returns once no heartbeat is being handled and none will be.
func (g *heartbeatGuard) quiesce() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
