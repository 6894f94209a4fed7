package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Peer identity (DESIGN.md, "Peer identity and the cluster key"): every
// connection's handshake ends knowing the peer's member ID, from its
// certificate (TLS), from the cluster-key exchange, or both; without TLS
// and without a key there is none.

// MaxMemberIDLen bounds a member ID, in bytes.
const MaxMemberIDLen = 256

const (
	memberScheme = "quorumlock"
	memberHost   = "member"
)

// MemberURI is the URI SAN that names member id in a certificate:
// quorumlock://member/<id>, the ID percent-encoded where a URL needs it.
func MemberURI(id string) *url.URL {
	return &url.URL{Scheme: memberScheme, Host: memberHost, Path: "/" + id}
}

// MemberIDFromCert returns the member ID that cert names: the path of its
// one URI SAN of the form quorumlock://member/<id>. Other URIs are
// ignored; none or several member URIs are an error wrapping
// ErrUnauthenticated.
func MemberIDFromCert(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if u.Scheme != memberScheme || u.Host != memberHost {
			continue
		}
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || !strings.HasPrefix(u.Path, "/") {
			return "", fmt.Errorf("%w: malformed member URI %.80q", ErrUnauthenticated, u.String())
		}
		ids = append(ids, u.Path[1:])
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%w: certificate %.80q names no member (a URI SAN %s://%s/<ID>)",
			ErrUnauthenticated, cert.Subject.CommonName, memberScheme, memberHost)
	case 1:
		if err := checkMemberID(ids[0]); err != nil {
			return "", err
		}
		return ids[0], nil
	default:
		return "", fmt.Errorf("%w: certificate names %d members", ErrUnauthenticated, len(ids))
	}
}

// MemberIDFromChain is the default Config.VerifyPeer: MemberIDFromCert
// of the chain's leaf.
func MemberIDFromChain(chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrUnauthenticated)
	}
	return MemberIDFromCert(chain[0])
}

func checkMemberID(id string) error {
	if id == "" || len(id) > MaxMemberIDLen || !utf8.ValidString(id) {
		return fmt.Errorf("%w: member ID of %d bytes: 1 to %d bytes of UTF-8", ErrUnauthenticated, len(id), MaxMemberIDLen)
	}
	return nil
}

type peerIDKey struct{}

// PeerID returns the member ID of the peer whose request a Handler is
// serving. ok is false when the Transport has neither TLS nor a
// ClusterKey: then nobody is authenticated.
func PeerID(ctx context.Context) (id string, ok bool) {
	id, ok = ctx.Value(peerIDKey{}).(string)
	return id, ok
}

func withPeerID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, peerIDKey{}, id)
}

// ConnPeerID returns the member ID of the peer of a Raft connection that
// this package's stream layer accepted or dialled (as PeerID for RPC).
func ConnPeerID(c net.Conn) (id string, ok bool) {
	if tc, isOurs := c.(*conn); isOurs && tc.peer != "" {
		return tc.peer, true
	}
	return "", false
}

// checkIdentity validates the identity fields of Config.
func (c Config) checkIdentity() error {
	if c.ID != "" && checkMemberID(c.ID) != nil {
		return invalid("ID", "%d bytes: 1 to %d bytes of UTF-8", len(c.ID), MaxMemberIDLen)
	}
	if c.ClusterKey != nil {
		if len(c.ClusterKey) < MinClusterKeyLen {
			return invalid("ClusterKey", "%d bytes, at least %d", len(c.ClusterKey), MinClusterKeyLen)
		}
		if c.ID == "" {
			return invalid("ID", "required with ClusterKey: the member ID this node claims")
		}
	}
	if c.VerifyPeer != nil && c.TLS == nil {
		return invalid("VerifyPeer", "needs TLS")
	}
	if c.TLS != nil && c.ID != "" && c.VerifyPeer == nil && len(c.TLS.Certificates) > 0 {
		// Our own certificate must name us, or every peer refuses us.
		cert := c.TLS.Certificates[0]
		leaf := cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		}
		if leaf != nil {
			id, err := MemberIDFromCert(leaf)
			if err != nil {
				return invalid("TLS.Certificates", "%v", err)
			}
			if id != c.ID {
				return invalid("TLS.Certificates", "certificate names member %q, not ID %q", id, c.ID)
			}
		}
	}
	return nil
}

// tlsPeerID is the member ID of the peer of a completed TLS handshake: its
// verified chain, mapped by VerifyPeer (default MemberIDFromChain). No
// verified chain is a refusal, whatever config produced the handshake.
func (t *Transport) tlsPeerID(tc *tls.Conn) (string, error) {
	cs := tc.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("%w: no verified certificate chain", ErrUnauthenticated)
	}
	verify := t.cfg.VerifyPeer
	if verify == nil {
		verify = MemberIDFromChain
	}
	id, err := verify(cs.VerifiedChains[0])
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return "", err
		}
		return "", fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if err := checkMemberID(id); err != nil {
		return "", err
	}
	return id, nil
}

// authenticate establishes the member ID of c's peer once its TLS
// handshake (if any) is done: from the certificate, then from the
// cluster-key exchange, which must agree. It returns "" when neither is
// configured. c's deadline bounds it.
func (t *Transport) authenticate(c net.Conn, server bool) (string, error) {
	var certID string
	if tc, ok := c.(*tls.Conn); ok {
		id, err := t.tlsPeerID(tc)
		if err != nil {
			return "", err
		}
		certID = id
	}
	if t.cfg.ClusterKey == nil {
		return certID, nil
	}
	exchange := clientKeyExchange
	if server {
		exchange = serverKeyExchange
	}
	claimed, err := exchange(c, t.cfg.ClusterKey, t.cfg.ID)
	if err != nil {
		return "", err
	}
	if certID != "" && claimed != certID {
		return "", fmt.Errorf("%w: peer claims member %.64q, its certificate names %.64q", ErrUnauthenticated, claimed, certID)
	}
	return claimed, nil
}

// authenticateDialled is authenticate for a connection this node dialled,
// bounded by ctx.
func (t *Transport) authenticateDialled(ctx context.Context, c net.Conn) (string, error) {
	if t.cfg.ClusterKey != nil {
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		defer func() { _ = c.SetDeadline(time.Time{}) }()
		// Deferred last, runs first: once it returns, nothing sets the
		// deadline behind the reset above.
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	id, err := t.authenticate(c, false)
	if err != nil && ctx.Err() != nil {
		return "", ctx.Err()
	}
	return id, err
}

// authFailed counts a connection whose peer did not prove a member
// identity (a timeout counts as one) and closes it.
func (t *Transport) authFailed(c *conn, remote string, err error) {
	switch {
	case t.ctx.Err() != nil:
		// Closing.
	case isTimeout(err):
		t.st.handshakeTimeouts.Add(1)
		t.log.Debug("connection closed: handshake deadline passed", "remote_addr", remote, "auth", true)
	case errors.Is(err, errNoHello):
		t.log.Debug("connection closed before its cluster-key hello", "remote_addr", remote)
	default:
		t.st.authFailures.Add(1)
		t.log.Info("connection closed: peer not authenticated", "remote_addr", remote, "error", err)
	}
	_ = c.Close()
}

// enforceClientAuth wraps a caller's GetConfigForClient so that the config
// it returns still requires and verifies a client certificate (against its
// ClientCAs, else its RootCAs, else base's ClientCAs).
func enforceClientAuth(get func(*tls.ClientHelloInfo) (*tls.Config, error), base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg, err := get(hello)
		if err != nil || cfg == nil {
			return cfg, err // nil: crypto/tls uses base, which requires it
		}
		cfg = cfg.Clone()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if cfg.ClientCAs == nil {
			cfg.ClientCAs = cfg.RootCAs
		}
		if cfg.ClientCAs == nil {
			cfg.ClientCAs = base.ClientCAs
		}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = base.MinVersion
		}
		return cfg, nil
	}
}

// HasDialled reports whether this Transport has dialled (for RPC or Raft)
// a server that authenticated as member id. Always false without TLS or
// a ClusterKey.
func (t *Transport) HasDialled(id string) bool {
	_, ok := t.dialled.Load(id)
	return ok
}
