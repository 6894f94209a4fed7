package node_test

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/node"
	"github.com/quorumlock/quorumlock/node/nodepb"
	"github.com/quorumlock/quorumlock/transport"
)

// Peer identity (issue 12 item 3; DESIGN.md, "Peer identity"): a peer that
// authenticates, but not as a member, can neither join, nor forward, nor
// speak Raft; a peer that cannot authenticate reaches nothing; a correct
// node joins and serves.

// TestCluster_IdentityTLS: "evil" holds a certificate from the cluster's
// own CA, naming a member ID that is not in the cluster.
func TestCluster_IdentityTLS(t *testing.T) {
	ca := newTestCA(t)
	c := testcluster.Start(t, testcluster.Options{Size: 3, Edit: func(_ int, cfg *node.Config) {
		cfg.TLS = ca.config(t, cfg.ID)
		cfg.AllowJoin = func(id string) bool { return strings.HasPrefix(id, "n") }
	}})
	ctx := clusterCtx(t)
	leader := c.Leader()
	evil := rogueTransport(t, transport.Config{TLS: ca.config(t, "evil")})

	t.Run("joins as another ID", func(t *testing.T) {
		resp := call(t, evil, c.Addr(leader), &nodepb.Request{Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: "n9", Addr: evil.Addr(), Voter: true}}})
		assert.Equal(t, nodepb.Status_STATUS_DENIED, resp.GetStatus())
		assert.Contains(t, resp.GetMessage(), "asks to join as")
		// A node whose Config.ID is not what its certificate names (only
		// a VerifyPeer lets it start) is refused too: its requests say
		// they come from another member.
		err := tryJoin(t, c, node.Config{ID: "n9", TLS: ca.config(t, "evil"), VerifyPeer: transport.MemberIDFromChain})
		require.Error(t, err)
	})
	t.Run("join refused by AllowJoin", func(t *testing.T) {
		err := tryJoin(t, c, node.Config{ID: "evil", TLS: ca.config(t, "evil")})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not allowed to join")
	})
	t.Run("propose", func(t *testing.T) {
		resp := forwardOpenSession(t, evil, c.Addr(leader))
		assert.Equal(t, nodepb.Status_STATUS_DENIED, resp.GetStatus())
		assert.Contains(t, resp.GetMessage(), "not a member")
	})
	t.Run("raft", func(t *testing.T) {
		term := c.Node(leader).Stats().Term
		require.Error(t, rogueVote(t, evil, c.ID(leader), c.Addr(leader), term+100),
			"a stranger's RequestVote was answered")
		assert.Less(t, c.Node(leader).Stats().Term, term+100)
	})
	members, err := c.Node(leader).Members()
	require.NoError(t, err)
	assert.Len(t, members, 3)

	joinAndServe(ctx, t, c)
}

// TestCluster_IdentityClusterKey: a node with another key reaches nothing;
// a holder of the key that claims a non-member ID is refused like evil
// above.
func TestCluster_IdentityClusterKey(t *testing.T) {
	key := clusterKey(t)
	c := testcluster.Start(t, testcluster.Options{Size: 3, Edit: func(_ int, cfg *node.Config) {
		cfg.ClusterKey = key
	}})
	ctx := clusterCtx(t)
	leader := c.Leader()

	t.Run("wrong key", func(t *testing.T) {
		wrong := rogueTransport(t, transport.Config{ID: "n9", ClusterKey: clusterKey(t)})
		_, err := wrong.Call(ctx, c.Addr(leader), []byte("anything"))
		require.ErrorIs(t, err, transport.ErrUnauthenticated)
		err = rogueVote(t, wrong, c.ID(leader), c.Addr(leader), c.Node(leader).Stats().Term+100)
		require.ErrorIs(t, err, transport.ErrUnauthenticated)
		err = tryJoin(t, c, node.Config{ID: "n9", ClusterKey: clusterKey(t), StartTimeout: 2 * time.Second})
		require.Error(t, err)
	})
	t.Run("key holder that is not a member", func(t *testing.T) {
		evil := rogueTransport(t, transport.Config{ID: "evil", ClusterKey: key})
		resp := forwardOpenSession(t, evil, c.Addr(leader))
		assert.Equal(t, nodepb.Status_STATUS_DENIED, resp.GetStatus())
		assert.Contains(t, resp.GetMessage(), "not a member")

		resp = call(t, evil, c.Addr(leader), &nodepb.Request{Op: &nodepb.Request_Join{Join: &nodepb.Join{Id: "n9", Addr: evil.Addr(), Voter: true}}})
		assert.Equal(t, nodepb.Status_STATUS_DENIED, resp.GetStatus())
		assert.Contains(t, resp.GetMessage(), "asks to join as")

		term := c.Node(leader).Stats().Term
		require.Error(t, rogueVote(t, evil, c.ID(leader), c.Addr(leader), term+100))
		assert.Less(t, c.Node(leader).Stats().Term, term+100)
	})
	members, err := c.Node(leader).Members()
	require.NoError(t, err)
	assert.Len(t, members, 3)

	joinAndServe(ctx, t, c)
}

// TestCluster_JoiningNodeAcceptsRaftOnlyFromWhomItDialled: a new node has
// no configuration while it joins; a key holder it never dialled cannot
// feed it Raft meanwhile (it would then hold a stranger's log, and as a
// voter of the real cluster could carry it there).
func TestCluster_JoiningNodeAcceptsRaftOnlyFromWhomItDialled(t *testing.T) {
	key := clusterKey(t)
	silent := silentListener(t) // the join target never answers
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	joinAddr := ln.Addr().String()
	done := make(chan error, 1)
	go func() {
		_, err := node.New(node.Config{ID: "j", Listener: ln, Join: silent, ClusterKey: key, StartTimeout: 3 * time.Second})
		done <- err
	}()

	evil := rogueTransport(t, transport.Config{ID: "evil", ClusterKey: key})
	assert.Error(t, rogueVote(t, evil, "j", joinAddr, 100), "the joining node answered a stranger's RequestVote")

	select {
	case err := <-done:
		assert.Error(t, err, "the join could not succeed")
	case <-time.After(time.Minute):
		t.Fatal("New did not give up")
	}
}

// joinAndServe adds a correctly configured node (Options.Edit gives it its
// identity) and takes a lock through it.
func joinAndServe(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	i, err := c.Add(c.Leader())
	require.NoError(t, err)
	l, err := c.Node(i).Acquire(ctx, "identity")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))
	c.WaitMembers(4)
}

// tryJoin starts a node with cfg that joins c through its leader, and
// returns New's error (closing the node if it started after all).
func tryJoin(t *testing.T, c *testcluster.Cluster, cfg node.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listener, cfg.Join = ln, c.Addr(c.Leader())
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 5 * time.Second
	}
	n, err := node.New(cfg)
	if err == nil {
		_ = n.Abort()
	}
	return err
}

func clusterKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, transport.MinClusterKeyLen)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func rogueTransport(t *testing.T, cfg transport.Config) *transport.Transport {
	t.Helper()
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// call sends req from tr to addr and decodes the reply.
func call(t *testing.T, tr *transport.Transport, addr string, req *nodepb.Request) *nodepb.Response {
	t.Helper()
	payload, err := proto.Marshal(req)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := tr.Call(ctx, addr, payload)
	require.NoError(t, err)
	resp := new(nodepb.Response)
	require.NoError(t, proto.Unmarshal(reply, resp))
	return resp
}

// forwardOpenSession forwards a valid OpenSession, as a follower would.
func forwardOpenSession(t *testing.T, tr *transport.Transport, addr string) *nodepb.Response {
	t.Helper()
	cmd := &fsmpb.Command{Op: &fsmpb.Command_OpenSession{OpenSession: &fsmpb.OpenSession{
		Req: &fsmpb.Request{Session: 0xe71, Seq: 1}, TtlNs: int64(testcluster.SessionTTL),
	}}}
	return call(t, tr, addr, &nodepb.Request{Op: &nodepb.Request_Propose{Propose: &nodepb.Propose{Command: cmd}}})
}

// rogueVote sends, over tr's Raft stream layer, a RequestVote for term to
// the node id at addr: a leadership-transfer vote, which a node that let
// it in would answer by stepping down to that term.
func rogueVote(t *testing.T, tr *transport.Transport, id, addr string, term uint64) error {
	t.Helper()
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: tr.Raft(), MaxPool: 1, Timeout: 10 * time.Second, Logger: hclog.NewNullLogger(),
	})
	defer func() { _ = nt.Close() }()
	req := &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(tr.Addr())},
		Term:      term, LastLogIndex: 1 << 40, LastLogTerm: term, LeadershipTransfer: true,
	}
	var resp raft.RequestVoteResponse
	return nt.RequestVote(raft.ServerID(id), raft.ServerAddress(addr), req, &resp)
}

// silentListener accepts connections and never speaks; it returns its
// address. Everything is closed at cleanup.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	conns := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestCluster_RaftDialChecksWhoAnswers: a node dialling a Raft peer hangs
// up, before sending anything, on a server that authenticates as another
// member than the configuration names at that address.
func TestCluster_RaftDialChecksWhoAnswers(t *testing.T) {
	key := clusterKey(t)
	impostor := rogueTransport(t, transport.Config{ID: "evil", ClusterKey: key})
	layer := impostor.Raft()
	defer func() { _ = layer.Close() }()

	done := make(chan error, 1)
	go func() {
		_, err := node.New(node.Config{ID: "a", Addr: "127.0.0.1:0", ClusterKey: key, StartTimeout: 3 * time.Second,
			Peers: []node.Peer{{ID: "a"}, {ID: "b", Addr: impostor.Addr()}}})
		done <- err
	}()

	c, err := layer.Accept() // a campaigns and dials "b"
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	got, err := io.ReadAll(c)
	assert.NoError(t, err, "a closed the connection")
	assert.Empty(t, got, "a sent Raft bytes to a server that is not b")
	_ = c.Close()

	select {
	case err := <-done:
		assert.Error(t, err, "a has no quorum")
	case <-time.After(time.Minute):
		t.Fatal("New did not give up")
	}
}
