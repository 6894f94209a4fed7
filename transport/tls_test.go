package transport_test

import (
	"context"
	"crypto/tls"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

func TestTLS_CallBothWays(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	a := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "a"), Handler: echo})
	b := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "b"), Handler: echo})

	got, err := a.Call(ctxWithLimit(t), b.Addr(), []byte("a->b"))
	require.NoError(t, err)
	assert.Equal(t, "a->b", string(got))
	got, err = b.Call(ctxWithLimit(t), a.Addr(), []byte("b->a"))
	require.NoError(t, err)
	assert.Equal(t, "b->a", string(got))
	assert.EqualValues(t, 0, a.Stats().TLSFailures)
	assert.EqualValues(t, 0, b.Stats().TLSFailures)
}

// With a shared ServerName, certificates need no IP SAN: every node's
// certificate names the cluster.
func TestTLS_SharedServerName(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	cfg := func() *tls.Config {
		c := ca.tlsConfig(t, "quorumlock")
		c.ServerName = "quorumlock"
		return c
	}
	a := newTransport(t, transport.Config{TLS: cfg(), Handler: echo})
	b := newTransport(t, transport.Config{TLS: cfg()})
	_, err := b.Call(ctxWithLimit(t), a.Addr(), []byte("x"))
	require.NoError(t, err)
}

// A peer whose certificate comes from another CA can neither call RPC nor
// open a Raft stream, in either direction, and the honest node never hands
// its connection to the handler or to Raft.
func TestTLS_WrongCARejected(t *testing.T) {
	good := newCA(t, "cluster-ca")
	evil := newCA(t, "other-ca")

	var served atomic.Int64
	srv := newTransport(t, transport.Config{TLS: good.tlsConfig(t, "srv"), Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { served.Add(1); return p, nil })})

	// Rogue peers, from the weakest to the most plausible.
	rogueCerts := map[string]*tls.Config{
		// Its own CA for everything: it does not trust srv either.
		"wrong CA both ways": evil.tlsConfig(t, "rogue"),
		// Trusts the cluster CA (so it accepts srv's certificate) but its
		// own certificate is from another CA: only srv's client
		// verification stands in the way.
		"wrong client certificate": presenting(evil.issue(t, "rogue"), good),
	}
	for name, cfg := range rogueCerts {
		t.Run(name, func(t *testing.T) {
			before := srv.Stats().TLSFailures
			rogue := newTransport(t, transport.Config{TLS: cfg, Handler: echo})

			// RPC rogue → srv.
			_, err := rogue.Call(ctxWithLimit(t), srv.Addr(), []byte("let me in"))
			require.Error(t, err)
			assert.True(t, transport.Retryable(err), "a TLS failure looks like an unreachable peer: %v", err)

			// Raft rogue → srv: either Dial fails, or (TLS 1.3: the client
			// finishes first) the stream dies at the first read.
			if c, err := rogue.Raft().Dial(raftAddr(srv), waitLimit); err == nil {
				require.NoError(t, c.SetReadDeadline(time.Now().Add(waitLimit)))
				_, err = io.ReadFull(c, make([]byte, 1))
				assert.Error(t, err)
				_ = c.Close()
			}
			waitFor(t, "srv to count both TLS failures", func() bool { return srv.Stats().TLSFailures >= before+2 })

			// srv → rogue, RPC and Raft: srv does not trust rogue's server
			// certificate.
			_, err = srv.Call(ctxWithLimit(t), rogue.Addr(), []byte("hello?"))
			assert.ErrorIs(t, err, transport.ErrUnreachable)
			_, err = srv.Raft().Dial(raftAddr(rogue), waitLimit)
			assert.Error(t, err)

			st := srv.Stats()
			assert.EqualValues(t, 0, st.RPCConnsAccepted)
			assert.EqualValues(t, 0, st.RaftConnsAccepted)
		})
	}
	assert.Zero(t, served.Load())
}

func TestTLS_NoClientCertificateRejected(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	srv := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "srv"), Handler: echo})

	c, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
	if err == nil {
		_, _ = c.Write([]byte{transport.MuxRPC})
		expectClosedByPeer(t, c)
		_ = c.Close()
	}
	waitFor(t, "TLS failure counted", func() bool { return srv.Stats().TLSFailures == 1 })
	assert.EqualValues(t, 0, srv.Stats().RPCConnsAccepted)
}

// A plaintext peer cannot reach a TLS node's protocols, and a TLS peer
// hitting a plaintext node is a bad first byte.
func TestTLS_PlaintextMismatch(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	secure := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "secure"), Handler: echo})
	plain := newTransport(t, transport.Config{Handler: echo})

	_, err := plain.Call(ctxWithLimit(t), secure.Addr(), []byte("x"))
	assert.Error(t, err)
	waitFor(t, "TLS failure counted", func() bool { return secure.Stats().TLSFailures == 1 })

	_, err = secure.Call(ctxWithLimit(t), plain.Addr(), []byte("x"))
	assert.ErrorIs(t, err, transport.ErrUnreachable)
	waitFor(t, "bad first byte counted", func() bool { return plain.Stats().BadFirstBytes == 1 })
}

// The handshake deadline covers the TLS handshake too.
func TestTLS_SlowLorisDuringHandshake(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	srv := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "srv"), HandshakeTimeout: 200 * time.Millisecond})
	c := rawDial(t, srv.Addr())
	_, err := c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
	require.NoError(t, err)
	expectClosedByPeer(t, c)
	waitFor(t, "timeout counted", func() bool { return srv.Stats().HandshakeTimeouts == 1 })
}

// presenting is a client configuration that trusts ca but always presents
// cert, even when the server asks for certificates of another CA (Go's
// default would then send none).
func presenting(cert tls.Certificate, ca *testCA) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
		RootCAs: ca.pool,
	}
}

func raftAddr(tr *transport.Transport) raft.ServerAddress { return raft.ServerAddress(tr.Addr()) }
