package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// Retry pacing while no leader is known or the leader is changing: an
// election takes about one election timeout, so start fast and back off to
// a fraction of it.
const (
	retryMin = 5 * time.Millisecond
	retryMax = 200 * time.Millisecond
)

// errAmbiguous marks a failed propose of which some attempt may still
// commit (a leader lost its leadership, or a forward's reply was lost).
var errAmbiguous = errors.New("node: outcome unknown")

// errNotLeader is the retryable "ask someone else" of one attempt.
var errNotLeader = errors.New("node: not the leader")

// propose commits cmd through the leader, wherever it is, and returns its
// result once this node has applied the entry too (so local events, such
// as a grant to a local waiter, have fired). While no leader is known or
// the leader cannot commit, it retries with backoff until ctx ends; a
// retried command carries the same (session, seq) and applies once.
//
// Errors: lock.ErrClosed after Close; lock.ErrNoQuorum joined with ctx's
// error when ctx ended before a commit; errAmbiguous is also wrapped when
// an attempt may still commit.
func (n *Node) propose(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, error) {
	var res *fsmpb.Result
	ambiguous := false
	err := n.retry(ctx, func() error {
		r, index, err := n.proposeOnce(ctx, cmd)
		if err != nil {
			ambiguous = ambiguous || errors.Is(err, errAmbiguous)
			return err
		}
		res = r
		return n.waitLocalApply(ctx, index)
	})
	if err != nil && ambiguous && !errors.Is(err, errAmbiguous) {
		err = fmt.Errorf("%w: %w", errAmbiguous, err)
	}
	return res, err
}

// retry runs attempt until it succeeds, fails for good (lock.ErrClosed,
// errFatal, fsm.ErrTooLarge), ctx ends (lock.ErrNoQuorum joined with ctx's
// error and the last attempt's), or the node closes; between attempts it
// backs off from retryMin to retryMax, and retries at once when the node
// learns of a leader change. This is the leader-hold of every call that
// needs the leader.
func (n *Node) retry(ctx context.Context, attempt func() error) error {
	backoff := retryMin
	for {
		changed := n.leaderChanged.changed()
		err := attempt()
		if err == nil || errors.Is(err, lock.ErrClosed) || errors.Is(err, errFatal) || errors.Is(err, fsm.ErrTooLarge) {
			return err
		}
		wait := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			return fmt.Errorf("%w: %w (last attempt: %w)", lock.ErrNoQuorum, ctx.Err(), err)
		case <-n.stop:
			wait.Stop()
			return lock.ErrClosed
		case <-changed:
			// A new leader (or none): try it now, and back off afresh.
			wait.Stop()
			backoff = retryMin
			continue
		case <-wait.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// errFatal marks errors that no retry can fix (a malformed request).
var errFatal = errors.New("node: rejected")

// proposeOnce makes one attempt: locally if this node leads, else by
// forwarding to the leader it knows.
func (n *Node) proposeOnce(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(ctx, cmd)
	}
	if n.trans == nil {
		return nil, 0, errNotLeader
	}
	resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}})
	if err != nil {
		return nil, 0, err
	}
	if resp.GetResult() == nil {
		return nil, 0, fmt.Errorf("%w: propose reply without result", errFatal)
	}
	return resp.GetResult(), resp.GetIndex(), nil
}

// apply is raft.Apply and the wait for its future, under applyMu (read):
// shutdown waits for it before it shuts Raft down.
func (n *Node) apply(data []byte, timeout time.Duration) (raft.ApplyFuture, error) {
	n.applyMu.RLock()
	defer n.applyMu.RUnlock()
	f := n.raft.Apply(data, timeout)
	return f, f.Error()
}

// applyLocal stamps, encodes and commits cmd on this node, the leader.
func (n *Node) applyLocal(ctx context.Context, cmd *fsmpb.Command) (*fsmpb.Result, uint64, error) {
	cmd = proto.CloneOf(cmd)
	cmd.StampUnixNano = n.wallNow().UnixNano()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f, err := n.apply(data, timeout)
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, 0, fmt.Errorf("%w: %w", lock.ErrClosed, err)
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
			errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, 0, fmt.Errorf("%w: %w", errNotLeader, err) // never appended
		default:
			return nil, 0, fmt.Errorf("%w: %w", errAmbiguous, err) // ErrLeadershipLost and the like
		}
	}
	ar, ok := f.Response().(applyResult)
	if !ok || ar.res == nil {
		return nil, 0, fmt.Errorf("%w: unexpected apply response %T", errFatal, f.Response())
	}
	return ar.res, f.Index(), nil
}

// waitLocalApply waits until this node has applied index, so that the
// entry's local events (a grant to a waiter here) have fired before the
// caller looks for them. It gives up when ctx ends (the node is cut off
// from the leader); the caller treats that as an unknown outcome.
func (n *Node) waitLocalApply(ctx context.Context, index uint64) error {
	if err := n.bridge.waitAppliedOr(ctx, n.stop, index); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w: committed at %d but not yet applied here: %w", errAmbiguous, lock.ErrNoQuorum, index, ctx.Err())
		}
		return lock.ErrClosed
	}
	return nil
}

// call sends one RPC to the leader this node knows.
func (n *Node) call(ctx context.Context, req *nodepb.Request) (*nodepb.Response, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, fmt.Errorf("%w: no leader known", errNotLeader)
	}
	return n.callAt(ctx, string(addr), req)
}

func (n *Node) callAt(ctx context.Context, addr string, req *nodepb.Request) (*nodepb.Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutNs = int64(time.Until(dl))
	}
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFatal, err)
	}
	reply, err := n.trans.Call(ctx, addr, payload)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errAmbiguous, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %w", errAmbiguous, err)
	}
	resp := new(nodepb.Response)
	if err := proto.Unmarshal(reply, resp); err != nil {
		return nil, fmt.Errorf("%w: malformed reply from %s: %w", errAmbiguous, addr, err)
	}
	switch resp.GetStatus() {
	case nodepb.Status_STATUS_OK:
		return resp, nil
	case nodepb.Status_STATUS_NOT_LEADER, nodepb.Status_STATUS_CLOSED:
		return nil, &hintError{addr: resp.GetLeaderAddr(), err: fmt.Errorf("%w: %s says %s", errNotLeader, addr, resp.GetMessage())}
	case nodepb.Status_STATUS_NO_QUORUM:
		return nil, fmt.Errorf("%w: %s: %s", errAmbiguous, addr, resp.GetMessage())
	default:
		return nil, fmt.Errorf("%w: %s: %s %s", errFatal, addr, resp.GetStatus(), resp.GetMessage())
	}
}

// serveRPC answers another node's request.
func (n *Node) serveRPC(ctx context.Context, payload []byte) ([]byte, error) {
	req := new(nodepb.Request)
	var resp *nodepb.Response
	if err := proto.Unmarshal(payload, req); err != nil {
		resp = &nodepb.Response{Status: nodepb.Status_STATUS_INVALID, Message: err.Error()}
	} else {
		if t := req.GetTimeoutNs(); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(t))
			defer cancel()
		}
		resp = n.serve(ctx, req)
	}
	return proto.Marshal(resp)
}

func (n *Node) serve(ctx context.Context, req *nodepb.Request) *nodepb.Response {
	select {
	case <-n.stop:
		return &nodepb.Response{Status: nodepb.Status_STATUS_CLOSED, Message: "shutting down"}
	case <-n.started:
	default:
		return &nodepb.Response{Status: nodepb.Status_STATUS_NOT_LEADER, Message: "starting"}
	}
	if _, ok := req.GetOp().(*nodepb.Request_Join); !ok && n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	switch op := req.GetOp().(type) {
	case *nodepb.Request_Propose:
		if op.Propose.GetCommand() == nil {
			return &nodepb.Response{Status: nodepb.Status_STATUS_INVALID, Message: "no command"}
		}
		res, index, err := n.applyLocal(ctx, op.Propose.GetCommand())
		if err != nil {
			return errResponse(err)
		}
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK, Result: res, Index: index}
	case *nodepb.Request_KeepAlive:
		// A new leader arms session timers once its term barrier is
		// applied; a keep-alive arriving before waits for that rather than
		// failing, so a leader change does not cost sessions.
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK, Renewed: n.ackKeepAlive(ctx, op.KeepAlive.GetSession())}
	case *nodepb.Request_ReadIndex:
		index, err := n.readIndex()
		if err != nil {
			return errResponse(err)
		}
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK, Index: index}
	case *nodepb.Request_Join:
		if n.raft.State() != raft.Leader {
			return n.notLeader()
		}
		if err := n.addServer(ctx, op.Join); err != nil {
			return errResponse(err)
		}
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK}
	case *nodepb.Request_Remove:
		if err := n.removeLocal(ctx, op.Remove.GetId()); err != nil {
			return errResponse(err)
		}
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK}
	default:
		return &nodepb.Response{Status: nodepb.Status_STATUS_INVALID, Message: "unknown request"}
	}
}

func (n *Node) notLeader() *nodepb.Response {
	addr, id := n.raft.LeaderWithID()
	return &nodepb.Response{Status: nodepb.Status_STATUS_NOT_LEADER, Message: "not the leader",
		LeaderAddr: string(addr), LeaderId: string(id)}
}

func errResponse(err error) *nodepb.Response {
	status := nodepb.Status_STATUS_ERROR
	switch {
	case errors.Is(err, lock.ErrClosed):
		status = nodepb.Status_STATUS_CLOSED
	case errors.Is(err, errNotLeader):
		status = nodepb.Status_STATUS_NOT_LEADER
	case errors.Is(err, errAmbiguous), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		status = nodepb.Status_STATUS_NO_QUORUM
	case errors.Is(err, fsm.ErrTooLarge), errors.Is(err, fsm.ErrCorrupt):
		status = nodepb.Status_STATUS_INVALID
	}
	return &nodepb.Response{Status: status, Message: err.Error()}
}

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
		return n.bridge.waitApplied(ctx, index)
	})
}

func (n *Node) readIndexAnywhere(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.readIndex()
	}
	if n.trans == nil {
		return 0, errNotLeader
	}
	resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_ReadIndex{ReadIndex: &nodepb.ReadIndex{}}})
	if err != nil {
		return 0, err
	}
	return resp.GetIndex(), nil
}

// renewSession sends one keep-alive to the leader, wherever it is, and
// gives up after timeout.
func (n *Node) renewSession(id uint64, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	if n.raft.State() == raft.Leader {
		return n.ackKeepAlive(ctx, id)
	}
	if n.trans == nil {
		return false
	}
	resp, err := n.call(ctx, &nodepb.Request{Op: &nodepb.Request_KeepAlive{KeepAlive: &nodepb.KeepAlive{Session: id}}})
	return err == nil && resp.GetRenewed()
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
	if n.leading.wait(ctx) != nil || !n.exp.keepAlive(id) {
		return false
	}
	return n.raft.VerifyLeader().Error() == nil
}
