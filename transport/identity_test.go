package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

// peerEcho replies with the caller's authenticated member ID ("?" if none).
var peerEcho = transport.HandlerFunc(func(ctx context.Context, _ []byte) ([]byte, error) {
	id, ok := transport.PeerID(ctx)
	if !ok {
		return []byte("?"), nil
	}
	return []byte(id), nil
})

func TestMemberURI_RoundTrip(t *testing.T) {
	for _, id := range []string{"n1", "node 7", "a/b", "ü-ñ", "x?y#z"} {
		u := transport.MemberURI(id)
		got, err := transport.MemberIDFromCert(&x509.Certificate{URIs: []*url.URL{u}})
		require.NoError(t, err, u.String())
		assert.Equal(t, id, got, u.String())
	}
	assert.Equal(t, "quorumlock://member/n1", transport.MemberURI("n1").String())
}

func TestMemberIDFromCert_Refuses(t *testing.T) {
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		require.NoError(t, err)
		return u
	}
	tests := map[string][]*url.URL{
		"no URI":            nil,
		"other scheme":      {mustURL("spiffe://member/n1")},
		"other host":        {mustURL("quorumlock://node/n1")},
		"empty ID":          {mustURL("quorumlock://member/")},
		"query":             {mustURL("quorumlock://member/n1?x=1")},
		"user":              {mustURL("quorumlock://u@member/n1")},
		"two member URIs":   {transport.MemberURI("n1"), transport.MemberURI("n2")},
		"ID over the limit": {transport.MemberURI(string(make([]byte, transport.MaxMemberIDLen+1)))},
	}
	for name, uris := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := transport.MemberIDFromCert(&x509.Certificate{URIs: uris})
			assert.ErrorIs(t, err, transport.ErrUnauthenticated)
		})
	}
	// Other URIs beside one member URI are fine.
	id, err := transport.MemberIDFromCert(&x509.Certificate{URIs: []*url.URL{mustURL("spiffe://x/y"), transport.MemberURI("n1")}})
	require.NoError(t, err)
	assert.Equal(t, "n1", id)
}

// The handler learns who calls, and both ends of a Raft stream know each
// other's member ID.
func TestIdentity_TLSPeerIDs(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	a := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "a"), Handler: peerEcho})
	b := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "b"), Handler: peerEcho})

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
		c, err := layer.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	out, err := b.Raft().Dial(raftAddr(a), waitLimit)
	require.NoError(t, err)
	defer func() { _ = out.Close() }()
	id, ok := transport.ConnPeerID(out)
	assert.True(t, ok)
	assert.Equal(t, "a", id, "the dialler knows the server's ID")
	assert.True(t, b.HasDialled("a"))
	assert.False(t, a.HasDialled("a"), "a dialled b, not itself")
	assert.True(t, a.HasDialled("b"))
	in := recvWithin(t, accepted, "the Raft connection")
	id, ok = transport.ConnPeerID(in)
	assert.True(t, ok)
	assert.Equal(t, "b", id, "the listener knows the client's ID")
}

// Without TLS or a key there is no identity, as before.
func TestIdentity_NoneWithoutTLSOrKey(t *testing.T) {
	a := newTransport(t, transport.Config{Handler: peerEcho})
	b := newTransport(t, transport.Config{})
	got, err := b.Call(ctxWithLimit(t), a.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "?", string(got))
	_, ok := transport.PeerID(context.Background())
	assert.False(t, ok)
	_, ok = transport.ConnPeerID(rawDial(t, a.Addr()))
	assert.False(t, ok)
}

// A certificate from the cluster's CA that names no member reaches
// neither the handler nor Raft, in either direction.
func TestIdentity_CertificateWithoutMemberRefused(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	var served atomic.Int64
	srv := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "srv"), Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { served.Add(1); return p, nil })})
	noMember := func(c *x509.Certificate) { c.URIs = nil }
	rogue := newTransport(t, transport.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "rogue", noMember)}, RootCAs: ca.pool,
	}, Handler: echo})

	_, err := rogue.Call(ctxWithLimit(t), srv.Addr(), []byte("let me in"))
	require.Error(t, err)
	if c, err := rogue.Raft().Dial(raftAddr(srv), waitLimit); err == nil {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(waitLimit)))
		_, err = io.ReadFull(c, make([]byte, 1))
		assert.Error(t, err)
		_ = c.Close()
	}
	waitFor(t, "srv to count both refusals", func() bool { return srv.Stats().AuthFailures >= 2 })

	// srv dialling rogue refuses rogue's server certificate.
	_, err = srv.Call(ctxWithLimit(t), rogue.Addr(), []byte("hello?"))
	require.ErrorIs(t, err, transport.ErrUnreachable)
	assert.ErrorIs(t, err, transport.ErrUnauthenticated)
	_, err = srv.Raft().Dial(raftAddr(rogue), waitLimit)
	assert.ErrorIs(t, err, transport.ErrUnauthenticated)

	st := srv.Stats()
	assert.EqualValues(t, 0, st.RPCConnsAccepted)
	assert.EqualValues(t, 0, st.RaftConnsAccepted)
	assert.Zero(t, served.Load())
}

// VerifyPeer replaces the URI rule: here the ID is the certificate's CN,
// and the verifier refuses one name.
func TestIdentity_VerifyPeer(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	byCN := func(chain []*x509.Certificate) (string, error) {
		if cn := chain[0].Subject.CommonName; cn != "banned" {
			return cn, nil
		}
		return "", errors.New("banned")
	}
	noMember := func(c *x509.Certificate) { c.URIs = nil }
	cfg := func(name string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, name, noMember)}, RootCAs: ca.pool}
	}
	srv := newTransport(t, transport.Config{TLS: cfg("srv"), VerifyPeer: byCN, Handler: peerEcho})
	ok := newTransport(t, transport.Config{TLS: cfg("friend"), VerifyPeer: byCN})
	got, err := ok.Call(ctxWithLimit(t), srv.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "friend", string(got))

	banned := newTransport(t, transport.Config{TLS: cfg("banned"), VerifyPeer: byCN})
	_, err = banned.Call(ctxWithLimit(t), srv.Addr(), nil)
	require.Error(t, err)
	waitFor(t, "refusal counted", func() bool { return srv.Stats().AuthFailures == 1 })
}

// A caller's GetConfigForClient that returns a config without client
// certificate verification does not let a client without a certificate
// in; with a certificate naming a member, the callback's config serves.
func TestIdentity_GetConfigForClientCannotDropClientAuth(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	base := ca.tlsConfig(t, "srv")
	var asked atomic.Int64
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		asked.Add(1)
		return &tls.Config{Certificates: base.Certificates, ClientAuth: tls.NoClientCert}, nil
	}
	srv := newTransport(t, transport.Config{TLS: base, Handler: peerEcho})

	c, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err == nil {
		_, _ = c.Write([]byte{transport.MuxRPC})
		expectClosedByPeer(t, c)
		_ = c.Close()
	}
	waitFor(t, "refusal counted", func() bool { st := srv.Stats(); return st.TLSFailures+st.AuthFailures == 1 })
	assert.EqualValues(t, 0, srv.Stats().RPCConnsAccepted)

	member := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "m")})
	got, err := member.Call(ctxWithLimit(t), srv.Addr(), nil)
	require.NoError(t, err)
	assert.Equal(t, "m", string(got))
	assert.Positive(t, asked.Load(), "the callback's config was used")
}

func TestIdentity_InvalidConfig(t *testing.T) {
	ca := newCA(t, "ca")
	key := make([]byte, transport.MinClusterKeyLen)
	tests := []struct {
		name  string
		cfg   transport.Config
		field string
	}{
		{"short key", transport.Config{ID: "n1", ClusterKey: key[:31]}, "ClusterKey"},
		{"key without ID", transport.Config{ClusterKey: key}, "ID"},
		{"ID too long", transport.Config{ID: string(make([]byte, transport.MaxMemberIDLen+1)), ClusterKey: key}, "ID"},
		{"VerifyPeer without TLS", transport.Config{VerifyPeer: func([]*x509.Certificate) (string, error) { return "", nil }}, "VerifyPeer"},
		{"certificate names another member", transport.Config{ID: "n2", TLS: ca.tlsConfig(t, "n1")}, "TLS.Certificates"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transport.New(tc.cfg)
			require.ErrorIs(t, err, transport.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}
