package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// Member is one server of the cluster configuration.
type Member struct {
	ID     string
	Addr   string
	Voter  bool
	Leader bool
}

// Stats is a snapshot of this node's view of the cluster.
type Stats struct {
	ID           string
	Addr         string
	State        string // "leader", "follower", "candidate" or "shutdown"
	LeaderID     string
	LeaderAddr   string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastContact  time.Time // last contact with the leader (zero on the leader)
	Sessions     int
	Locks        int
	// Protocol is the protocol level the applied state has committed to:
	// 1 until every voter runs a build of protocol 2 and the leader raised
	// it (DESIGN.md, "Versions and rolling upgrades").
	Protocol int
	// SnapshotRestores counts the snapshots this node restored since it
	// started: its own at start-up, and those the leader sent because the
	// node had fallen behind the leader's truncated log.
	SnapshotRestores uint64
}

// Addr is this node's advertised cluster address ("" for a single node
// without network).
func (n *Node) Addr() string {
	if n.trans == nil {
		return ""
	}
	return n.addr
}

// Leader returns the ID and address of the leader this node knows, or empty
// strings during an election.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Members lists the servers of the latest configuration this node knows.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leaderID})
	}
	return out, nil
}

// Stats reports this node's Raft state and the size of the lock state.
func (n *Node) Stats() Stats {
	leaderAddr, leaderID := n.raft.LeaderWithID()
	st := Stats{
		ID: n.cfg.ID, Addr: n.Addr(), State: stateName(n.raft.State()),
		LeaderID: string(leaderID), LeaderAddr: string(leaderAddr),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), LastContact: n.raft.LastContact(),
	}
	n.bridge.read(func(s *fsm.State) {
		st.Sessions = s.SessionCount()
		st.Locks = s.LockCount()
		st.Protocol = s.Protocol()
	})
	n.bridge.mu.RLock()
	st.AppliedIndex = n.bridge.applied
	st.SnapshotRestores = n.bridge.restores
	n.bridge.mu.RUnlock()
	return st
}

// observe is what the node hands its metrics Sink to read at a scrape
// (metrics.Sink.Observe).
func (n *Node) observe() metrics.Stats {
	st := n.Stats()
	m := metrics.Stats{
		Term: st.Term, Leader: st.State == "leader", CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
		StoreSessions: st.Sessions, StoreLocks: st.Locks,
	}
	if n.trans != nil {
		ts := n.trans.Stats()
		m.Dials, m.DialFailures, m.ConnsLost, m.PendingCalls = ts.Dials, ts.DialFailures, ts.ConnsLost, ts.PendingCalls
		m.ActiveConns, m.AuthFailures, m.IOTimeouts = ts.ActiveConns, ts.AuthFailures, ts.IOTimeouts
	}
	return m
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

// join asks the cluster at cfg.Join (or the leader it names) to add this
// node, retrying until ctx ends.
func (n *Node) join(ctx context.Context) error {
	req := &nodepb.Request{Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: n.cfg.ID, Addr: n.addr, Voter: !n.cfg.NonVoter}}}
	target := n.cfg.Join
	err := n.retry(ctx, func() error {
		_, err := n.callAt(ctx, target, req)
		target = n.cfg.Join
		if hint := leaderHint(err); hint != "" {
			target = hint // follow the member's pointer to the leader
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("node: join via %s: %w", n.cfg.Join, err)
	}
	n.log.Info("joined cluster", "via", n.cfg.Join)
	return nil
}

// addServer runs on the leader: AddVoter / AddNonvoter, idempotent for a
// server already present at the same address.
func (n *Node) addServer(ctx context.Context, j *nodepb.Join) error {
	if j.GetId() == "" || j.GetAddr() == "" {
		return fmt.Errorf("%w: join needs id and addr", errFatal)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var f raft.IndexFuture
	if j.GetVoter() {
		f = n.raft.AddVoter(raft.ServerID(j.GetId()), raft.ServerAddress(j.GetAddr()), 0, timeout)
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(j.GetId()), raft.ServerAddress(j.GetAddr()), 0, timeout)
	}
	if err := f.Error(); err != nil {
		return membershipErr(err)
	}
	n.log.Info("added server", "id", j.GetId(), "addr", j.GetAddr(), "voter", j.GetVoter())
	return nil
}

func membershipErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrRaftShutdown):
		return lock.ErrClosed
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", errNotLeader, err)
	default:
		return fmt.Errorf("%w: %w", errAmbiguous, err)
	}
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: remove needs an id", errFatal)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
		return membershipErr(err)
	}
	n.log.Info("removed server", "id", id)
	leasecore.Kick(n.upgrade) // the removed voter may have been the oldest
	return nil
}

// RemoveServer removes server id from the cluster configuration, through
// the leader wherever it is. Removing a server that is still running
// leaves it without a cluster: stop it first, or let it call Leave.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.trans == nil {
		return fmt.Errorf("%w: a single node has no cluster", ErrInvalidConfig)
	}
	return n.retry(ctx, func() error {
		return n.atLeader(func() error {
			return n.removeLocal(ctx, id)
		}, func() error {
			_, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_Remove{Remove: &nodepb.Remove{Id: id}}})
			return err
		})
	})
}

// Leave releases this node's sessions, removes it from the cluster
// configuration and closes it.
func (n *Node) Leave(ctx context.Context) error {
	closeErr := n.closeClients(ctx, true)
	if n.raft.State() == raft.Leader {
		n.transferLeadership(ctx)
	}
	err := n.RemoveServer(ctx, n.cfg.ID)
	return errors.Join(closeErr, err, n.Shutdown(ctx))
}

// TransferLeadership hands this node's leadership to another voter and
// returns once one has taken it (within an election timeout). ErrNotLeader
// if this node does not lead (the message names the leader it knows).
func (n *Node) TransferLeadership(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.raft.State() != raft.Leader {
		id, _ := n.Leader()
		return fmt.Errorf("%w: the leader is %q", ErrNotLeader, id)
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("node: leadership transfer: %w", err)
	}
	return nil
}
