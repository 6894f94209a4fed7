package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/transport"
)

// chatter demotes and rate-limits hashicorp/raft's routine log lines
// (DESIGN.md, "Logs"): a peer that cannot be reached is reported at Warn
// once, then at Debug, with a Warn reminder (and the count of lines held
// back) every chatterRemind while it goes on; elections, vote refusals and
// catch-up are Debug; and once the node is stopping (quiet), every known
// line and every line whose error is the node's own shutdown is Debug.
// Other lines keep hclogAdapter's mapping, while stopping too: a storage
// error during a stop is still one an operator must see.
type chatter struct {
	now   func() time.Time
	quiet atomic.Bool // the node is stopping

	mu    sync.Mutex
	peers map[string]*peerChatter // by message and peer
}

type peerChatter struct {
	lastSeen, lastWarned time.Time
	held                 int // lines held back since lastWarned
}

const (
	// chatterRemind: how often a peer that stays unreachable is reported
	// again at Warn.
	chatterRemind = 30 * time.Second
	// chatterQuiet: after this long without a line about a peer, the next
	// one is news again.
	chatterQuiet = time.Minute
	// chatterPeers bounds the state: one entry per message and peer.
	chatterPeers = 256
)

// chatterKind says how a known Raft message is treated.
type chatterKind uint8

const (
	chatterRoutine chatterKind = iota + 1 // always Debug
	chatterPeer                           // Warn once per peer, then reminders
)

// raftChatter lists the routine messages of hashicorp/raft v1.7.3, by
// their exact text. Anything else (storage errors, a failed snapshot
// restore) keeps its level: those are what an operator must see.
var raftChatter = map[string]chatterKind{
	"failed to heartbeat to":                  chatterPeer,
	"failed to appendEntries to":              chatterPeer,
	"failed to pipeline appendEntries":        chatterPeer,
	"failed to start pipeline replication to": chatterPeer,
	"failed to make requestVote RPC":          chatterPeer,
	"failed to contact":                       chatterPeer,
	"failed to send snapshot to":              chatterPeer,
	// A connection from a peer that broke mid-request (its node stopped,
	// the network cut it): no peer attribute, so one Warn for all peers.
	"failed to decode incoming command": chatterPeer,
	"failed to flush response":          chatterPeer,

	"heartbeat timeout reached, starting election":                  chatterRoutine,
	"Election timeout reached, restarting election":                 chatterRoutine,
	"new leader elected, stepping down":                             chatterRoutine,
	"peer has newer term, stopping replication":                     chatterRoutine,
	"rejecting vote request since we have a leader":                 chatterRoutine,
	"rejecting vote request since our last term is greater":         chatterRoutine,
	"rejecting vote request since our last index is greater":        chatterRoutine,
	"rejecting vote request since node is not in configuration":     chatterRoutine,
	"rejecting pre-vote request since we have a leader":             chatterRoutine,
	"rejecting pre-vote request since our last term is greater":     chatterRoutine,
	"rejecting pre-vote request since our last index is greater":    chatterRoutine,
	"rejecting pre-vote request since node is not in configuration": chatterRoutine,
	"duplicate requestVote from":                                    chatterRoutine,
	"previous log term mis-match":                                   chatterRoutine,
	// A follower behind the leader's next index (after a leader change,
	// a restart): the leader backs off and sends older entries.
	"failed to get previous log":                 chatterRoutine,
	"appendEntries rejected, sending older logs": chatterRoutine,
	"clearing log suffix":                        chatterRoutine,
	// Not listed, so kept at Warn: "failed to contact quorum of nodes,
	// stepping down" (the leader lost its quorum).
}

func newChatter() *chatter {
	return &chatter{now: time.Now, peers: map[string]*peerChatter{}}
}

// level returns the level at which to log a Raft line that hclogAdapter
// mapped to lv, and extra attributes to add (the count of lines held back).
func (c *chatter) level(lv slog.Level, msg string, args []any) (slog.Level, []any) {
	if c.quiet.Load() && (raftChatter[msg] != 0 || stopping(argError(args))) {
		return slog.LevelDebug, nil
	}
	if msg == "failed to take snapshot" && errors.Is(argError(args), raft.ErrNothingNewToSnapshot) {
		return slog.LevelDebug, nil
	}
	switch raftChatter[msg] {
	case chatterRoutine:
		return slog.LevelDebug, nil
	case chatterPeer:
		return c.peer(msg+"\x00"+argPeer(args), min(lv, slog.LevelWarn))
	}
	return lv, nil
}

// peer rate-limits the lines of one message about one peer.
func (c *chatter) peer(key string, warn slog.Level) (slog.Level, []any) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[key]
	if p == nil || now.Sub(p.lastSeen) >= chatterQuiet {
		if p == nil && len(c.peers) >= chatterPeers {
			c.forgetOldest()
		}
		c.peers[key] = &peerChatter{lastSeen: now, lastWarned: now}
		return warn, nil
	}
	p.lastSeen = now
	if now.Sub(p.lastWarned) < chatterRemind {
		p.held++
		return slog.LevelDebug, nil
	}
	held := p.held
	p.lastWarned, p.held = now, 0
	return warn, []any{"repeated", held, "since", chatterRemind}
}

func (c *chatter) forgetOldest() {
	var oldest string
	var at time.Time
	for k, p := range c.peers {
		if oldest == "" || p.lastSeen.Before(at) {
			oldest, at = k, p.lastSeen
		}
	}
	delete(c.peers, oldest)
}

// argPeer finds the peer a Raft line is about ("peer", "target" or
// "server-id"), as text.
func argPeer(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "peer", "target", "server-id":
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

func argError(args []any) error {
	for i := 0; i+1 < len(args); i += 2 {
		if err, ok := args[i+1].(error); ok && args[i] == "error" {
			return err
		}
	}
	return nil
}

// stopping reports whether err is what Raft and the transport of a
// stopping node say about their own end: not news once the node stops.
func stopping(err error) bool {
	return errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, raft.ErrTransportShutdown) ||
		errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrConnLost) || errors.Is(err, net.ErrClosed)
}
