package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/internal/leasecore"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
	"github.com/quorumlock/quorumlock/node/nodepb"
)

// The node's RPCs (nodepb) between members: the client half (call, callAt)
// asks the leader, the server half (handleRPC, serve) answers on the
// transport's cluster port.

// errLeaderChanged is the cause with which call stops a forward to a
// leader this node no longer knows as the leader.
var errLeaderChanged = errors.New("node: the leader changed during the call")

// call sends one RPC to the leader this node knows. It gives up on the
// call as soon as this node learns of another leader (or none): a leader
// that became a black hole keeps its connections open and never answers,
// and a call without a deadline (context.Background()) would wait on it
// forever while a new leader serves (R4). The caller's retry then asks the
// new leader; the attempt counts as ambiguous (it may have been appended).
func (n *Node) call(ctx context.Context, req *nodepb.Request) (*nodepb.Response, error) {
	changed := n.leaderChanged.changed()
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, fmt.Errorf("%w: no leader known", errNotLeader)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go n.abortOnLeaderChange(changed, addr, cancel, done)
	start := time.Now()
	resp, err := n.callAt(cctx, string(addr), req)
	n.metrics.Forwarded(metrics.OutcomeOf(err), time.Since(start))
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errLeaderChanged) {
		return nil, fmt.Errorf("%w: %s: %w", errAmbiguous, addr, errLeaderChanged)
	}
	return resp, err
}

// abortOnLeaderChange cancels a call to addr (with errLeaderChanged) once
// this node knows a leader other than addr, until done closes.
func (n *Node) abortOnLeaderChange(changed <-chan struct{}, addr raft.ServerAddress, cancel context.CancelCauseFunc, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-n.stop:
			return
		case <-changed:
		}
		changed = n.leaderChanged.changed()
		if now, _ := n.raft.LeaderWithID(); now != addr {
			cancel(errLeaderChanged)
			return
		}
	}
}

// callAt sends one RPC to the member at addr and maps its reply's status to
// the errors retry knows: errNotLeader (with the leader it names) to try
// elsewhere, errAmbiguous when the request may have taken effect, errFatal
// when no retry can help.
func (n *Node) callAt(ctx context.Context, addr string, req *nodepb.Request) (*nodepb.Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutNs = int64(time.Until(dl))
	}
	req.Protocol, req.From = uint32(n.protocol.Load()), n.cfg.ID
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFatal, err)
	}
	reply, err := n.trans.Call(ctx, addr, payload)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w: %w", errAmbiguous, errCutShort, ctx.Err())
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
	case nodepb.Status_STATUS_UNSUPPORTED:
		return nil, fmt.Errorf("%w: %w: %s: %s", errFatal, ErrUnsupported, addr, resp.GetMessage())
	case nodepb.Status_STATUS_DENIED:
		return nil, fmt.Errorf("%w: %w: %s: %s", errFatal, errDenied, addr, resp.GetMessage())
	case nodepb.Status_STATUS_LIMIT:
		return nil, fmt.Errorf("%w: %w: %s: %s", errFatal, lock.ErrLimit, addr, resp.GetMessage())
	case nodepb.Status_STATUS_NO_QUORUM:
		return nil, fmt.Errorf("%w: %s: %s", errAmbiguous, addr, resp.GetMessage())
	default:
		return nil, fmt.Errorf("%w: %s: %s %s", errFatal, addr, resp.GetStatus(), resp.GetMessage())
	}
}

// leaderHint extracts the leader address a NOT_LEADER reply named.
func leaderHint(err error) string {
	var h *hintError
	if errors.As(err, &h) {
		return h.addr
	}
	return ""
}

type hintError struct {
	addr string
	err  error
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// handleRPC is the transport's Handler: it decodes another node's request,
// bounds ctx by the caller's deadline, serves it and encodes the reply.
func (n *Node) handleRPC(ctx context.Context, payload []byte) ([]byte, error) {
	req := new(nodepb.Request)
	var resp *nodepb.Response
	if err := proto.Unmarshal(payload, req); err != nil {
		resp = &nodepb.Response{Status: nodepb.Status_STATUS_INVALID, Message: err.Error()}
	} else {
		n.peers.heard(sender(ctx, req), req.GetProtocol())
		leasecore.Kick(n.upgrade) // maybe every voter speaks a newer protocol now
		if t := req.GetTimeoutNs(); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(t))
			defer cancel()
		}
		resp = n.serve(ctx, req)
	}
	return proto.Marshal(resp)
}

// serve answers one request. Every request but Join needs this node to be
// the leader; a follower answers NOT_LEADER with the leader it knows.
func (n *Node) serve(ctx context.Context, req *nodepb.Request) *nodepb.Response {
	select {
	case <-n.stop:
		return &nodepb.Response{Status: nodepb.Status_STATUS_CLOSED, Message: "shutting down"}
	case <-n.started:
	default:
		return &nodepb.Response{Status: nodepb.Status_STATUS_NOT_LEADER, Message: "starting"}
	}
	if err := validRequest(req); err != nil {
		return &nodepb.Response{Status: nodepb.Status_STATUS_INVALID, Message: err.Error()}
	}
	if _, ok := req.GetOp().(*nodepb.Request_Join); !ok && n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if resp := n.authorize(ctx, req); resp != nil {
		return resp
	}
	switch op := req.GetOp().(type) {
	case *nodepb.Request_Propose:
		res, index, err := n.proposeLocal(ctx, op.Propose.GetCommand())
		if err != nil {
			return errResponse(err)
		}
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK, Result: res, Index: index}
	case *nodepb.Request_KeepAlive:
		// A new leader arms session timers once its term barrier is
		// applied; a keep-alive arriving before waits for that rather than
		// failing, so a leader change does not cost sessions.
		out, ttl := n.ackKeepAlive(ctx, op.KeepAlive.GetSession(), op.KeepAlive.GetSecret())
		return &nodepb.Response{Status: nodepb.Status_STATUS_OK, Renewed: out == renewed, Gone: out == renewGone, TtlNs: int64(ttl)}
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
	default: // validRequest refused it
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
	case errors.Is(err, lock.ErrLimit):
		status = nodepb.Status_STATUS_LIMIT
	case errors.Is(err, ErrUnsupported):
		status = nodepb.Status_STATUS_UNSUPPORTED
	case errors.Is(err, errNotLeader):
		status = nodepb.Status_STATUS_NOT_LEADER
	case errors.Is(err, errAmbiguous), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		status = nodepb.Status_STATUS_NO_QUORUM
	case errors.Is(err, fsm.ErrTooLarge), errors.Is(err, fsm.ErrCorrupt),
		errors.Is(err, fsm.ErrInvalid), errors.Is(err, fsm.ErrUnknownCommand):
		status = nodepb.Status_STATUS_INVALID
	}
	return &nodepb.Response{Status: status, Message: err.Error()}
}
