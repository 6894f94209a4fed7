package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

func TestNew_InvalidConfig(t *testing.T) {
	ca := newCA(t, "ca")
	good := ca.tlsConfig(t, "n1")
	withTLS := func(mut func(c *tls.Config)) *tls.Config {
		c := good.Clone()
		mut(c)
		return c
	}
	tests := []struct {
		name  string
		cfg   transport.Config
		field string
	}{
		{"bad addr", transport.Config{Addr: "no-port"}, "Addr"},
		{"unspecified addr without advertise", transport.Config{Addr: "0.0.0.0:0"}, "AdvertiseAddr"},
		{"empty host without advertise", transport.Config{Addr: ":0"}, "AdvertiseAddr"},
		{"bad advertise", transport.Config{AdvertiseAddr: "no-port"}, "AdvertiseAddr"},
		{"unspecified advertise", transport.Config{AdvertiseAddr: "0.0.0.0:7001"}, "AdvertiseAddr"},
		{"negative handshake timeout", transport.Config{HandshakeTimeout: -time.Second}, "HandshakeTimeout"},
		{"negative pending handshakes", transport.Config{MaxPendingHandshakes: -1}, "MaxPendingHandshakes"},
		{"negative max conns", transport.Config{MaxConns: -1}, "MaxConns"},
		{"negative max conns per IP", transport.Config{MaxConnsPerIP: -1}, "MaxConnsPerIP"},
		{"max conns per IP above max conns", transport.Config{MaxConns: 8, MaxConnsPerIP: 9}, "MaxConnsPerIP"},
		{"frame size too small", transport.Config{MaxFrameSize: 16}, "MaxFrameSize"},
		{"frame size too big", transport.Config{MaxFrameSize: 1 << 30}, "MaxFrameSize"},
		{"negative in flight", transport.Config{MaxInFlightPerConn: -1}, "MaxInFlightPerConn"},
		{"negative bytes per conn", transport.Config{MaxInFlightBytesPerConn: -1}, "MaxInFlightBytesPerConn"},
		{"bytes per conn below frame size", transport.Config{MaxFrameSize: 64 << 10, MaxInFlightBytesPerConn: 64<<10 - 1}, "MaxInFlightBytesPerConn"},
		{"negative bytes", transport.Config{MaxInFlightBytes: -1}, "MaxInFlightBytes"},
		{"bytes below bytes per conn", transport.Config{MaxInFlightBytesPerConn: 1 << 20, MaxInFlightBytes: 1<<20 - 1}, "MaxInFlightBytes"},
		{"negative conns per peer", transport.Config{ConnsPerPeer: -1}, "ConnsPerPeer"},
		{"too many conns per peer", transport.Config{ConnsPerPeer: 1000}, "ConnsPerPeer"},
		{"negative dial timeout", transport.Config{DialTimeout: -1}, "DialTimeout"},
		{"negative io timeout", transport.Config{IOTimeout: -1}, "IOTimeout"},
		{"tls without certificate", transport.Config{TLS: withTLS(func(c *tls.Config) { c.Certificates = nil })}, "TLS.Certificates"},
		{"tls without CA", transport.Config{TLS: withTLS(func(c *tls.Config) { c.RootCAs = nil })}, "TLS.RootCAs"},
		{"tls skip verify", transport.Config{TLS: withTLS(func(c *tls.Config) { c.InsecureSkipVerify = true })}, "TLS.InsecureSkipVerify"},
		{"tls weak client auth", transport.Config{TLS: withTLS(func(c *tls.Config) { c.ClientAuth = tls.RequestClientCert })}, "TLS.ClientAuth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := transport.New(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, tr)
			assert.ErrorIs(t, err, transport.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.field)
			assert.NoError(t, tr.Close(), "Close is safe after a failed New")
		})
	}
}

func TestNew_ZeroConfig(t *testing.T) {
	tr := newTransport(t, transport.Config{})
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, tr.Addr())
	assert.Equal(t, tr.Addr(), tr.Raft().Addr().String())
	assert.Equal(t, transport.Stats{}, tr.Stats())
}

// Zero fields take their defaults; the derived ones follow the fields they
// depend on.
func TestNew_DerivedDefaults(t *testing.T) {
	tests := []struct {
		name                      string
		cfg                       transport.Config
		perIP, bytesPerConn, byts int
	}{
		{"zero", transport.Config{},
			transport.DefaultMaxConnsPerIP, transport.DefaultMaxInFlightBytesPerConn, transport.DefaultMaxInFlightBytes},
		{"few conns", transport.Config{MaxConns: 10},
			10, transport.DefaultMaxInFlightBytesPerConn, transport.DefaultMaxInFlightBytes},
		{"big frames", transport.Config{MaxFrameSize: 32 << 20},
			transport.DefaultMaxConnsPerIP, 32 << 20, transport.DefaultMaxInFlightBytes},
		{"big budget per conn", transport.Config{MaxInFlightBytesPerConn: 200 << 20},
			transport.DefaultMaxConnsPerIP, 200 << 20, 200 << 20},
		{"set", transport.Config{MaxConnsPerIP: 3, MaxInFlightBytesPerConn: 2 << 20, MaxInFlightBytes: 5 << 20},
			3, 2 << 20, 5 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := transport.EffectiveConfig(tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, tc.perIP, got.MaxConnsPerIP)
			assert.Equal(t, tc.bytesPerConn, got.MaxInFlightBytesPerConn)
			assert.Equal(t, tc.byts, got.MaxInFlightBytes)
		})
	}
}

func TestNew_AdvertiseAddr(t *testing.T) {
	tr := newTransport(t, transport.Config{Addr: "127.0.0.1:0", AdvertiseAddr: "10.1.2.3:7001"})
	assert.Equal(t, "10.1.2.3:7001", tr.Addr())
	assert.Equal(t, "10.1.2.3:7001", tr.Raft().Addr().String())
	assert.Equal(t, "tcp", tr.Raft().Addr().Network())
}

func TestNew_ListenError(t *testing.T) {
	a := newTransport(t, transport.Config{})
	_, err := transport.New(transport.Config{Addr: a.Addr()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Addr")
	assert.False(t, errors.Is(err, transport.ErrInvalidConfig), "a busy port is not a config error")
}

func TestTransport_CloseIdempotent(t *testing.T) {
	tr, err := transport.New(transport.Config{Handler: echo})
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	require.NoError(t, tr.Close())

	_, err = tr.Call(ctxWithLimit(t), tr.Addr(), []byte("x"))
	assert.ErrorIs(t, err, transport.ErrClosed)
	_, err = tr.Raft().Dial("127.0.0.1:1", time.Second)
	assert.ErrorIs(t, err, transport.ErrClosed)
	_, err = tr.Raft().Accept()
	assert.ErrorIs(t, err, transport.ErrClosed)
}

func TestRetryable(t *testing.T) {
	assert.True(t, transport.Retryable(transport.ErrConnLost))
	assert.True(t, transport.Retryable(transport.ErrUnreachable))
	assert.True(t, transport.Retryable(transport.ErrBusy))
	assert.False(t, transport.Retryable(transport.ErrClosed))
	assert.False(t, transport.Retryable(transport.ErrFrameTooLarge))
	assert.False(t, transport.Retryable(&transport.RemoteError{Message: "x"}))
	assert.False(t, transport.Retryable(nil))
}

// TestNew_ListenerAndDial: a caller-made listener is served, and a custom
// dialer carries every outgoing connection (the hook a fault-injecting
// test harness uses).
func TestNew_ListenerAndDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := newTransport(t, transport.Config{Listener: ln, Handler: echo})
	assert.Equal(t, ln.Addr().String(), srv.Addr())

	var dials atomic.Int32
	cli := newTransport(t, transport.Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := cli.Call(ctx, srv.Addr(), []byte("via custom dial"))
	require.NoError(t, err)
	assert.Equal(t, "via custom dial", string(got))
	assert.Positive(t, dials.Load())

	refuse := newTransport(t, transport.Config{Dial: func(context.Context, string) (net.Conn, error) {
		return nil, errors.New("partitioned")
	}})
	_, err = refuse.Call(ctx, srv.Addr(), []byte("x"))
	assert.Error(t, err)

	_, err = transport.New(transport.Config{Addr: "127.0.0.1:0", Listener: ln})
	assert.ErrorIs(t, err, transport.ErrInvalidConfig)
}
