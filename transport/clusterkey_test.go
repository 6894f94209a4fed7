package transport_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, transport.MinClusterKeyLen)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// Nodes sharing the key talk, RPC and Raft, and learn each other's
// claimed ID.
func TestClusterKey_SameKey(t *testing.T) {
	key := newKey(t)
	a := newTransport(t, transport.Config{ID: "a", ClusterKey: key, Handler: peerEcho})
	b := newTransport(t, transport.Config{ID: "b", ClusterKey: key, Handler: peerEcho})
	got, err := b.Call(ctxWithLimit(t), a.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "b", string(got))
	got, err = a.Call(ctxWithLimit(t), b.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "a", string(got))

	layer := a.Raft()
	defer func() { _ = layer.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := layer.Accept(); err == nil {
			accepted <- c
		}
	}()
	out, err := b.Raft().Dial(raftAddr(a), waitLimit)
	require.NoError(t, err)
	defer func() { _ = out.Close() }()
	id, _ := transport.ConnPeerID(out)
	assert.Equal(t, "a", id)
	id, _ = transport.ConnPeerID(recvWithin(t, accepted, "the Raft connection"))
	assert.Equal(t, "b", id)
	assert.Zero(t, a.Stats().AuthFailures)
}

// A node with another key reaches neither the handler nor Raft, either
// way; the listener counts it.
func TestClusterKey_WrongKeyRefused(t *testing.T) {
	var served atomic.Int64
	srv := newTransport(t, transport.Config{ID: "srv", ClusterKey: newKey(t), Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { served.Add(1); return p, nil })})
	rogue := newTransport(t, transport.Config{ID: "rogue", ClusterKey: newKey(t), Handler: echo})

	_, err := rogue.Call(ctxWithLimit(t), srv.Addr(), []byte("let me in"))
	require.ErrorIs(t, err, transport.ErrUnreachable)
	assert.ErrorIs(t, err, transport.ErrUnauthenticated)
	_, err = rogue.Raft().Dial(raftAddr(srv), waitLimit)
	assert.ErrorIs(t, err, transport.ErrUnauthenticated)
	_, err = srv.Call(ctxWithLimit(t), rogue.Addr(), []byte("hello?"))
	assert.ErrorIs(t, err, transport.ErrUnauthenticated)

	// srv refused both of rogue's dials. (rogue refused srv's dial on its
	// own side: srv's proof did not verify under rogue's key; srv then
	// sees its connection closed, which it does not count.)
	waitFor(t, "srv counts both refusals", func() bool { return srv.Stats().AuthFailures == 2 })
	st := srv.Stats()
	assert.Zero(t, st.RPCConnsAccepted)
	assert.Zero(t, st.RaftConnsAccepted)
	assert.Zero(t, served.Load())
}

// A keyless peer and a keyed one do not talk, either way.
func TestClusterKey_KeyMismatchWithPlaintext(t *testing.T) {
	keyed := newTransport(t, transport.Config{ID: "k", ClusterKey: newKey(t), Handler: echo})
	plain := newTransport(t, transport.Config{Handler: echo})
	_, err := plain.Call(ctxWithLimit(t), keyed.Addr(), []byte("x"))
	assert.Error(t, err)
	waitFor(t, "keyed counts the refusal", func() bool { return keyed.Stats().AuthFailures == 1 })
	_, err = keyed.Call(ctxWithLimit(t), plain.Addr(), []byte("x"))
	assert.ErrorIs(t, err, transport.ErrUnreachable)
	assert.Zero(t, keyed.Stats().RPCConnsAccepted)
	assert.Zero(t, plain.Stats().RPCConnsAccepted)
}

// recorder is a Config.Dial that keeps a copy of everything written on
// the connections it opens.
type recorder struct {
	mu      sync.Mutex
	written []*bytes.Buffer
}

func (r *recorder) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	buf := new(bytes.Buffer)
	r.mu.Lock()
	r.written = append(r.written, buf)
	r.mu.Unlock()
	return &teeConn{Conn: c, r: r, buf: buf}, nil
}

func (r *recorder) first() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.written[0].Bytes())
}

type teeConn struct {
	net.Conn
	r   *recorder
	buf *bytes.Buffer
}

func (c *teeConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.buf.Write(p)
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// A recorded client side of a successful exchange, replayed byte for byte
// on a new connection, is refused: the server's fresh nonce makes the old
// proof worthless.
func TestClusterKey_ReplayRefused(t *testing.T) {
	key := newKey(t)
	var served atomic.Int64
	srv := newTransport(t, transport.Config{ID: "srv", ClusterKey: key, Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { served.Add(1); return p, nil })})
	rec := &recorder{}
	cli := newTransport(t, transport.Config{ID: "cli", ClusterKey: key, Dial: rec.dial})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("once"))
	require.NoError(t, err)
	require.EqualValues(t, 1, served.Load())

	replay := rawDial(t, srv.Addr())
	_, err = replay.Write(rec.first()) // hello, proof, mux byte, the request
	require.NoError(t, err)
	expectClosedByPeer(t, replay)
	waitFor(t, "the replay counted", func() bool { return srv.Stats().AuthFailures == 1 })
	assert.EqualValues(t, 1, served.Load(), "the replayed request was not served")
	assert.EqualValues(t, 1, srv.Stats().RPCConnsAccepted)
}

// With TLS as well, the ID claimed in the exchange must be the one the
// certificate names.
func TestClusterKey_WithTLSClaimMustMatchCertificate(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	key := newKey(t)
	srv := newTransport(t, transport.Config{ID: "srv", ClusterKey: key, TLS: ca.tlsConfig(t, "srv"), Handler: peerEcho})
	good := newTransport(t, transport.Config{ID: "good", ClusterKey: key, TLS: ca.tlsConfig(t, "good")})
	got, err := good.Call(ctxWithLimit(t), srv.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "good", string(got))

	// A key holder with a certificate naming "mallory" claims to be
	// "good". New refuses such a config, so build the liar from a
	// VerifyPeer that accepts anything for its own certificate check.
	liar := newTransport(t, transport.Config{ID: "good", ClusterKey: key, TLS: ca.tlsConfig(t, "mallory"),
		VerifyPeer: transport.MemberIDFromChain})
	_, err = liar.Call(ctxWithLimit(t), srv.Addr(), nil)
	require.Error(t, err)
	waitFor(t, "refusal counted", func() bool { return srv.Stats().AuthFailures == 1 })
}

// The exchange runs under the handshake deadline: a client that sends
// half a hello and stalls is closed and counted as a timeout.
func TestClusterKey_StallUnderHandshakeDeadline(t *testing.T) {
	srv := newTransport(t, transport.Config{ID: "srv", ClusterKey: newKey(t), HandshakeTimeout: 200 * time.Millisecond})
	c := rawDial(t, srv.Addr())
	_, err := c.Write(append(transport.KeyMagic[:], 1, 2, 3)) // magic, then part of a nonce
	require.NoError(t, err)
	expectClosedByPeer(t, c)
	waitFor(t, "timeout counted", func() bool { return srv.Stats().HandshakeTimeouts == 1 })
	assert.Zero(t, srv.Stats().AuthFailures)
}

// Garbage instead of a hello is refused at once.
func TestClusterKey_GarbageRefused(t *testing.T) {
	srv := newTransport(t, transport.Config{ID: "srv", ClusterKey: newKey(t)})
	c := rawDial(t, srv.Addr())
	_, err := c.Write(bytes.Repeat([]byte{0xff}, 64))
	require.NoError(t, err)
	expectClosedByPeer(t, c)
	waitFor(t, "refusal counted", func() bool { return srv.Stats().AuthFailures == 1 })
}
