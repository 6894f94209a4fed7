package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"
)

// Defaults and limits of Config (see DESIGN.md for why).
const (
	DefaultAddr                 = "127.0.0.1:0"
	DefaultHandshakeTimeout     = 5 * time.Second
	DefaultMaxPendingHandshakes = 256
	DefaultMaxConns             = 1024
	DefaultMaxConnsPerIP        = 64
	DefaultMaxFrameSize         = 1536 << 10 // 1.5 MiB
	DefaultMaxInFlightPerConn   = 1024
	// The byte budgets' defaults are raised to MaxFrameSize (and to the
	// per-connection budget) when those are larger.
	DefaultMaxInFlightBytesPerConn = 16 << 20
	DefaultMaxInFlightBytes        = 128 << 20
	DefaultConnsPerPeer            = 2
	DefaultDialTimeout             = 5 * time.Second
	DefaultIOTimeout               = 10 * time.Second
	DefaultIdleTimeout             = 5 * time.Minute

	// MinFrameSize and MaxFrameSizeLimit bound Config.MaxFrameSize.
	MinFrameSize      = 1 << 10
	MaxFrameSizeLimit = 64 << 20
	// MaxConnsPerPeer bounds Config.ConnsPerPeer.
	MaxConnsPerPeer = 16

	// FrameOverhead is the framing around a Call payload: the largest
	// payload Call accepts is MaxFrameSize - FrameOverhead. A reply may be
	// 8 bytes larger (it carries no timeout).
	FrameOverhead = frameMinLen + requestPrefixLen
)

// Config configures a Transport. Every zero field means its documented
// default; New validates the rest and names the bad field.
type Config struct {
	// Addr is the TCP address to listen on. Default DefaultAddr (loopback,
	// any free port). Binding an unspecified address (":7001",
	// "0.0.0.0:7001") requires AdvertiseAddr.
	Addr string
	// AdvertiseAddr is the address peers dial to reach this node; Raft
	// records it as this server's address. Default: the listener's address.
	AdvertiseAddr string

	// Listener, when set, is served instead of listening on Addr (leave
	// Addr empty). Once New succeeds the transport owns it and Close closes
	// it. For sockets made elsewhere (inherited, wrapped) and for tests.
	Listener net.Listener

	// Dial, when set, opens outgoing connections instead of a TCP dialer;
	// TLS and the protocol byte are layered on what it returns. For custom
	// networking (proxies, test fault injection). It must respect ctx.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// TLS, when set, makes every connection mutual TLS, for both the
	// listener and dials: the peer must present a certificate that verifies
	// against ClientCAs (or RootCAs if ClientCAs is nil) and this node
	// presents Certificates. See DESIGN.md. Without TLS there is no
	// authentication: the port must sit on a trusted network.
	TLS *tls.Config

	// ID is this node's member ID, claimed in the cluster-key exchange
	// (required with ClusterKey) and, with TLS, checked against the
	// member its own certificate names. See DESIGN.md, "Peer identity".
	ID string
	// ClusterKey, when set (at least MinClusterKeyLen bytes, the same on
	// every node), makes every connection start with a mutual HMAC
	// challenge–response: peers without the key are refused before any
	// protocol byte. Without TLS it authenticates, but neither encrypts
	// nor protects the connection afterwards.
	ClusterKey []byte
	// VerifyPeer, with TLS, maps a peer's verified certificate chain (leaf
	// first) to its member ID, or refuses it. Default MemberIDFromChain:
	// the leaf's URI SAN quorumlock://member/<ID> (MemberURI).
	VerifyPeer func(chain []*x509.Certificate) (id string, err error)

	// Handler serves incoming RPC requests. Nil answers every request with
	// a RemoteError.
	Handler Handler

	// Logger receives the transport's logs. Nil means silent.
	Logger *slog.Logger

	// HandshakeTimeout bounds the TLS handshake plus the protocol byte of an
	// accepted connection. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes bounds accepted connections still in handshake;
	// more are closed at once. Default DefaultMaxPendingHandshakes.
	MaxPendingHandshakes int
	// MaxConns bounds accepted connections open at once (Raft and RPC);
	// more are closed at once. Default DefaultMaxConns.
	MaxConns int
	// MaxConnsPerIP bounds accepted connections open at once from one
	// remote IP address; more are closed at once. Default the smaller of
	// DefaultMaxConnsPerIP and MaxConns; at most MaxConns.
	MaxConnsPerIP int
	// MaxFrameSize caps an RPC frame (bytes after its 4-byte length), in
	// both directions. Must be the same on every node. Default
	// DefaultMaxFrameSize; between MinFrameSize and MaxFrameSizeLimit.
	MaxFrameSize int
	// MaxInFlightPerConn bounds concurrently running handlers per incoming
	// connection; more requests are answered ErrBusy. Default
	// DefaultMaxInFlightPerConn.
	MaxInFlightPerConn int
	// MaxInFlightBytesPerConn bounds the request payload bytes held by the
	// running handlers of one incoming connection; a request that would
	// exceed it is answered ErrBusy. Default the larger of
	// DefaultMaxInFlightBytesPerConn and MaxFrameSize; at least
	// MaxFrameSize.
	MaxInFlightBytesPerConn int
	// MaxInFlightBytes bounds the request payload bytes held by all running
	// handlers; a request that would exceed it is answered ErrBusy.
	// Default the larger of DefaultMaxInFlightBytes and
	// MaxInFlightBytesPerConn; at least MaxInFlightBytesPerConn.
	MaxInFlightBytes int
	// ConnsPerPeer is how many connections Call pools per peer address.
	// Default DefaultConnsPerPeer; at most MaxConnsPerPeer.
	ConnsPerPeer int
	// DialTimeout bounds connecting to a peer (TCP, TLS, protocol byte).
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// IOTimeout bounds writing one RPC frame, and reading the rest of a
	// frame once it has started to arrive. Default DefaultIOTimeout.
	IOTimeout time.Duration
	// IdleTimeout closes an incoming RPC connection that has had nothing
	// in flight and received no frame for that long; Call retires its own
	// pooled connections after half of it. Use the same value on every
	// node. Default DefaultIdleTimeout.
	IdleTimeout time.Duration
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// withDefaults fills zero fields and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Listener != nil {
		if c.Addr != "" {
			return c, invalid("Addr", "set Addr or Listener, not both")
		}
		c.Addr = c.Listener.Addr().String()
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return c, invalid("Addr", "%q: %v", c.Addr, err)
	}
	if c.AdvertiseAddr == "" {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return c, invalid("AdvertiseAddr", "required when Addr %q binds an unspecified address", c.Addr)
		}
	} else if err := checkAdvertise(c.AdvertiseAddr); err != nil {
		return c, invalid("AdvertiseAddr", "%q: %v", c.AdvertiseAddr, err)
	}

	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HandshakeTimeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
		{"DialTimeout", &c.DialTimeout, DefaultDialTimeout},
		{"IOTimeout", &c.IOTimeout, DefaultIOTimeout},
		{"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return c, invalid(d.name, "negative (%v)", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"MaxPendingHandshakes", &c.MaxPendingHandshakes, DefaultMaxPendingHandshakes, 1 << 20},
		{"MaxConns", &c.MaxConns, DefaultMaxConns, 1 << 20},
		{"MaxConnsPerIP", &c.MaxConnsPerIP, 0, 1 << 20}, // default derived below
		{"MaxFrameSize", &c.MaxFrameSize, DefaultMaxFrameSize, MaxFrameSizeLimit},
		{"MaxInFlightPerConn", &c.MaxInFlightPerConn, DefaultMaxInFlightPerConn, 1 << 20},
		{"MaxInFlightBytesPerConn", &c.MaxInFlightBytesPerConn, 0, math.MaxInt}, // default derived below
		{"MaxInFlightBytes", &c.MaxInFlightBytes, 0, math.MaxInt},               // default derived below
		{"ConnsPerPeer", &c.ConnsPerPeer, DefaultConnsPerPeer, MaxConnsPerPeer},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return c, invalid(n.name, "negative (%d)", *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
		if *n.v > n.max {
			return c, invalid(n.name, "%d above the limit %d", *n.v, n.max)
		}
	}
	if c.MaxFrameSize < MinFrameSize {
		return c, invalid("MaxFrameSize", "%d below the minimum %d", c.MaxFrameSize, MinFrameSize)
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = min(DefaultMaxConnsPerIP, c.MaxConns)
	}
	if c.MaxConnsPerIP > c.MaxConns {
		return c, invalid("MaxConnsPerIP", "%d above MaxConns %d", c.MaxConnsPerIP, c.MaxConns)
	}
	if c.MaxInFlightBytesPerConn == 0 {
		c.MaxInFlightBytesPerConn = max(DefaultMaxInFlightBytesPerConn, c.MaxFrameSize)
	}
	if c.MaxInFlightBytesPerConn < c.MaxFrameSize {
		return c, invalid("MaxInFlightBytesPerConn", "%d below MaxFrameSize %d: a maximal request would never fit",
			c.MaxInFlightBytesPerConn, c.MaxFrameSize)
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = max(DefaultMaxInFlightBytes, c.MaxInFlightBytesPerConn)
	}
	if c.MaxInFlightBytes < c.MaxInFlightBytesPerConn {
		return c, invalid("MaxInFlightBytes", "%d below MaxInFlightBytesPerConn %d",
			c.MaxInFlightBytes, c.MaxInFlightBytesPerConn)
	}
	if c.TLS != nil {
		if err := checkTLS(c.TLS); err != nil {
			return c, err
		}
	}
	if err := c.checkIdentity(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func checkAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("unspecified address is not advertisable")
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
