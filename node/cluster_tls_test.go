package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
	"github.com/quorumlock/quorumlock/transport"
)

func TestCluster_TLS(t *testing.T) {
	ctx := clusterCtx(t)
	ca := newTestCA(t)
	other := newTestCA(t)
	c := startFounders(t, []string{"a", "b", "c"}, func(id string) *tls.Config { return ca.config(t, id) })
	l, err := c.Node(1).Acquire(ctx, "tls")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	// A node with a certificate from another CA can neither join nor speak
	// Raft: New fails, and the cluster's configuration is unchanged.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() }) // harmless after the node closed it
	_, err = node.New(node.Config{ID: "rogue", Listener: ln, Join: c.Node(0).Addr(), TLS: other.config(t, "rogue"), StartTimeout: 2 * time.Second})
	assert.Error(t, err)
	members, err := c.Node(0).Members()
	require.NoError(t, err)
	assert.Len(t, members, 3)

	// Nor can a node without TLS.
	_, err = node.New(node.Config{ID: "plain", Addr: "127.0.0.1:0", Join: c.Node(0).Addr(), StartTimeout: 2 * time.Second})
	assert.Error(t, err)
}

// testCA issues certificates for loopback peers.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "quorumlock test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// config returns a mutual-TLS config with a fresh certificate for
// 127.0.0.1 naming member id, usable for both serving and dialling.
func (ca *testCA) config(t *testing.T, id string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		URIs:        []*url.URL{transport.MemberURI(id)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}
