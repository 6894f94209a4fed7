package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// readIndex is the leader's half of a linearizable read: an index such
// that every operation completed before the read started is at or below
// it. It captures the commit index, then confirms leadership with a
// quorum; a leader that has not yet applied its own term's barrier cannot
// answer.
func (n *Node) readIndex() (uint64, error) {
	if !n.leading.isOpen() {
		return 0, fmt.Errorf("%w: leader not ready", errNotLeader)
	}
	index := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return 0, lock.ErrClosed
		}
		return 0, fmt.Errorf("%w: %w", errNotLeader, err)
	}
	if !n.leadsTerm() { // lost and won again since the barrier: not ready in the new term
		return 0, fmt.Errorf("%w: leader not ready in its new term", errNotLeader)
	}
	return index, nil
}

// readBarrier makes a following local read linearizable: it gets a read
// index (locally when leading, else from the leader) and waits until this
// node has applied it. It retries while no leader can answer, until ctx
// ends.
func (n *Node) readBarrier(ctx context.Context) error {
	return n.retry(ctx, func() error {
		index, err := n.readIndexAnywhere(ctx)
		if err != nil {
			return err
		}
		if err := n.bridge.waitApplied(ctx, index); err != nil {
			return fmt.Errorf("%w: read index %d: %w", errBehind, index, err)
		}
		return nil
	})
}

// readIndexAnywhere gets a read index from the leader, wherever it is.
func (n *Node) readIndexAnywhere(ctx context.Context) (index uint64, err error) {
	err = n.atLeader(func() error {
		index, err = n.readIndex()
		return err
	}, func() error {
		resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_ReadIndex{ReadIndex: &nodepb.ReadIndex{}}})
		if err != nil {
			return err
		}
		index = resp.GetIndex()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return index, nil
}

// Inspect implements lock.Locker: a linearizable read (readBarrier) of this
// node's applied state.
func (c *client) Inspect(ctx context.Context, name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	if c.isClosed() {
		return lock.Info{}, lock.ErrClosed
	}
	if err := c.n.readBarrier(ctx); err != nil {
		return lock.Info{}, err
	}
	return c.n.localInfo(name, o.QueueLimit), nil
}

// InspectLocal reports name from this node's own applied state without
// asking the leader: it answers without a quorum and costs no network round
// trip, but it is a stale read — it can miss operations that completed
// elsewhere and have not yet been applied here. It takes Inspect's options.
func (n *Node) InspectLocal(name string, opts ...lock.InspectOption) (lock.Info, error) {
	if err := lock.ValidateName(name); err != nil {
		return lock.Info{}, err
	}
	o, err := lock.NewInspectOptions(opts...)
	if err != nil {
		return lock.Info{}, err
	}
	return n.localInfo(name, o.QueueLimit), nil
}

// wallNow is the wall clock of leader stamps: only Inspect reads it back
// (ExpiresIn, and Since and Waited of what this node did not see applied
// live). Expiry runs on monotonic timers and never looks at it.
func (n *Node) wallNow() time.Time { return time.Now().Add(time.Duration(n.wallSkew.Load())) }
