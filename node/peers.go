package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/node/nodepb"
	"github.com/quorumlock/quorumlock/transport"
)

// Peer identity (DESIGN.md, "Peer identity"): with TLS or a cluster key the
// transport authenticates every connection's member ID; here the node
// decides what that ID may do. Without either there is no identity and
// nothing here refuses anything.

// errDenied: the authenticated peer may not do what it asked.
var errDenied = errors.New("node: denied")

// sender is who sent req: the authenticated member ID when there is one,
// else what the request says.
func sender(ctx context.Context, req *nodepb.Request) string {
	if id, ok := transport.PeerID(ctx); ok {
		return id
	}
	return req.GetFrom()
}

// authorize refuses a request its authenticated sender may not make. A
// Join's checks need no state; the others run on the leader (serve
// answers NOT_LEADER before), against its latest configuration.
func (n *Node) authorize(ctx context.Context, req *nodepb.Request) *nodepb.Response {
	peer, ok := transport.PeerID(ctx)
	if !ok {
		return nil
	}
	if from := req.GetFrom(); from != "" && from != peer {
		return &nodepb.Response{Status: nodepb.Status_STATUS_INVALID,
			Message: fmt.Sprintf("node: request from %.64q sent by member %.64q", from, peer)}
	}
	var err error
	if j, isJoin := req.GetOp().(*nodepb.Request_Join); isJoin {
		err = n.mayJoin(peer, j.Join.GetId())
	} else if !n.isMember(peer) {
		err = fmt.Errorf("%w: %.64q is not a member of the cluster", errDenied, peer)
	}
	if err != nil {
		n.log.Info("request refused", "peer", peer, "op", fmt.Sprintf("%T", req.GetOp()), "error", err)
		return &nodepb.Response{Status: nodepb.Status_STATUS_DENIED, Message: err.Error()}
	}
	return nil
}

// mayJoin: a node adds itself, never another, and only if AllowJoin lets
// it.
func (n *Node) mayJoin(peer, id string) error {
	if peer != id {
		return fmt.Errorf("%w: member %.64q asks to join as %.64q", errDenied, peer, id)
	}
	if n.cfg.AllowJoin != nil && !n.cfg.AllowJoin(id) {
		return fmt.Errorf("%w: %.64q is not allowed to join (AllowJoin)", errDenied, id)
	}
	return nil
}

// isMember reports whether id is in this node's latest configuration.
func (n *Node) isMember(id string) bool {
	_, ok := n.memberAddrs()[id]
	return ok
}

// memberAddrs maps the latest configuration's IDs to their addresses (nil
// if Raft cannot say).
func (n *Node) memberAddrs() map[string]string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	out := map[string]string{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = string(s.Address)
	}
	return out
}

// memberStream is Raft's stream layer with identity checks: Accept passes
// on only streams from members (or, while this node's configuration is
// empty, from a member it dialled to join), Dial only a server that is the
// member configured at that address.
type memberStream struct {
	raft.StreamLayer
	n *Node
}

// ready waits until n.raft is set; false if the node stopped first.
func (s *memberStream) ready() bool {
	select {
	case <-s.n.started:
		return true
	case <-s.n.stop:
		return false
	}
}

// Accept implements raft.StreamLayer.
func (s *memberStream) Accept() (net.Conn, error) {
	for {
		c, err := s.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		peer, ok := transport.ConnPeerID(c)
		if !ok {
			return c, nil // no identity configured
		}
		if !s.ready() {
			_ = c.Close()
			return nil, transport.ErrClosed
		}
		if s.mayStream(peer) {
			return c, nil
		}
		s.n.log.Info("raft stream refused: not a member", "peer", peer, "remote_addr", c.RemoteAddr().String())
		_ = c.Close()
	}
}

// mayStream: a member of the latest configuration; while it is empty (a
// node joining, or one that died before its first entry arrived), a
// server this node dialled, which is how it joined, or one of its
// founding Peers.
func (s *memberStream) mayStream(peer string) bool {
	members := s.n.memberAddrs()
	if len(members) == 0 {
		return s.n.trans.HasDialled(peer) || s.n.isFounder(peer)
	}
	_, ok := members[peer]
	return ok
}

// Dial implements raft.StreamLayer.
func (s *memberStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	peer, ok := transport.ConnPeerID(c)
	if !ok {
		return c, nil
	}
	if !s.ready() {
		_ = c.Close()
		return nil, transport.ErrClosed
	}
	for id, addr := range s.n.memberAddrs() {
		if addr == string(address) && id != peer {
			_ = c.Close()
			return nil, fmt.Errorf("%w: %s answered as member %.64q, the configuration has %.64q there", errDenied, address, peer, id)
		}
	}
	return c, nil
}

// isFounder reports whether id is one of this node's Config.Peers.
func (n *Node) isFounder(id string) bool {
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return true
		}
	}
	return false
}
