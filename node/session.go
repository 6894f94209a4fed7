package node

import (
	"context"
	"time"

	"github.com/quorumlock/quorumlock/node/nodepb"
)

// renewSession sends one keep-alive to the leader, wherever it is, and
// gives up after timeout.
func (n *Node) renewSession(id uint64, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	renewed := false
	_ = n.atLeader(func() error {
		renewed = n.ackKeepAlive(ctx, id)
		return nil
	}, func() error {
		resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: id}}})
		renewed = err == nil && resp.GetRenewed()
		return err
	})
	return renewed
}

// ackKeepAlive renews session id on this node, the leader, and reports
// whether the client may count on it. A new leader first waits for its term
// barrier (its timers are armed then). After resetting the timer it
// confirms leadership with a quorum: a deposed leader that has not noticed
// yet must not acknowledge, because the new leader's timers started at its
// election and a late acknowledgement would move the client's deadline past
// them (I3). Once a quorum confirmed this leader after the keep-alive
// arrived, any later leader is elected after that, and re-arms the session
// at a full TTL from then.
func (n *Node) ackKeepAlive(ctx context.Context, id uint64) bool {
	if n.leading.wait(ctx) != nil || !n.exp.resetSession(id) {
		return false
	}
	return n.raft.VerifyLeader().Error() == nil
}
