package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLockd_Security runs three lockd processes with mutual TLS between
// replicas and bearer tokens on the API: no token or an unknown one is
// 401, a client token on an admin endpoint 403, an admin token passes; a
// replica with a certificate from another CA cannot join; SIGHUP reloads
// the tokens.
func TestLockd_Security(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes (-short)")
	}
	t.Parallel()
	bin := buildLockd(t)
	ca := newTestCA(t, "cluster")
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("client-token-0123456789 client\nadmin-token-0123456789 admin\n"), 0o600))
	c := startProcClusterWith(t, bin, 3, func(p *proc) {
		cert, key, _ := ca.issue(t, p.id, p.id)
		p.extra = []string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca.pem, "-http-tokens", tokens}
		p.token = "admin-token-0123456789"
	})
	p := c.procs[0]
	anon, client := p.api, p.api
	anon.Token, client.Token = "", "client-token-0123456789"

	r := anon.must(t, "POST", "/v1/locks/x?ttl=1m", 401)
	assert.Equal(t, "unauthenticated", r.Error)
	wrong := anon
	wrong.Token = "client-token-012345678X"
	wrong.must(t, "GET", "/v1/locks", 401)
	anon.must(t, "GET", "/healthz", 200)
	anon.must(t, "GET", "/readyz", 200)
	res, err := anon.Client.Get(anon.Base + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(metrics), "quorumlock_", "Prometheus exposition of the node's metrics, without a token")

	held := client.must(t, "POST", "/v1/locks/x?ttl=1m", 200)
	for _, admin := range []struct{ method, path string }{
		{"POST", fmt.Sprintf("/v1/locks/x/revoke?token=%d", held.Token)},
		{"POST", "/v1/leader/transfer"},
		{"GET", "/v1/snapshot"},
	} {
		assert.Equal(t, "forbidden", client.must(t, admin.method, admin.path, 403).Error, admin.path)
	}
	p.must(t, "GET", "/v1/snapshot", 200)
	p.must(t, "POST", fmt.Sprintf("/v1/locks/x/revoke?token=%d", held.Token), 202)
	client.must(t, "DELETE", "/v1/locks/x?lease="+held.Lease, 200)

	// SIGHUP: a new token file replaces the old tokens.
	require.NoError(t, os.WriteFile(tokens, []byte("client-token-abcdefghij client\nadmin-token-0123456789 admin\n"), 0o600))
	for _, q := range c.procs {
		require.NoError(t, q.cmd.Process.Signal(syscall.SIGHUP))
	}
	require.Eventually(t, func() bool {
		code, _, err := client.call(t.Context(), "GET", "/v1/locks")
		return err == nil && code == http.StatusUnauthorized
	}, 10*time.Second, 10*time.Millisecond, "the old client token is refused after SIGHUP")
	client.Token = "client-token-abcdefghij"
	client.must(t, "GET", "/v1/locks", 200)

	// A replica whose certificate another CA issued cannot join.
	rogue := newTestCA(t, "rogue")
	cert, key, _ := rogue.issue(t, "n4", "n4")
	intruder := &proc{id: "n4", addr: freePort(t), http: freePort(t), data: filepath.Join(t.TempDir(), "n4")}
	intruder.extra = []string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", rogue.pem, "-join", c.procs[0].addr}
	intruder.start(t, bin)
	t.Cleanup(intruder.kill)
	require.Eventually(t, func() bool {
		for _, q := range c.procs {
			if strings.Contains(q.log.String(), "TLS handshake failed") {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the members refuse the intruder's handshake")
	code, r, err := intruder.call(t.Context(), "GET", "/readyz")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code, "the intruder is in no cluster: %+v", r)
	st := p.must(t, "GET", "/v1/status", 200)
	assert.Len(t, st.Members, 3, "the intruder is no member")
}

// TestLockd_HTTPS serves the API over HTTPS and requires client
// certificates: a client without one is refused in the handshake, one
// with a certificate from the client CA has the client role, and an admin
// token raises it.
func TestLockd_HTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes (-short)")
	}
	t.Parallel()
	bin := buildLockd(t)
	serverCA, clientCA := newTestCA(t, "server"), newTestCA(t, "clients")
	srvCert, srvKey, _ := serverCA.issue(t, "lockd", "")
	_, _, clientCert := clientCA.issue(t, "app", "")
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("admin-token-0123456789 admin\n"), 0o600))
	c := startProcClusterWith(t, bin, 1, func(p *proc) {
		p.extra = []string{"-http-tls-cert", srvCert, "-http-tls-key", srvKey, "-http-client-ca", clientCA.pem, "-http-tokens", tokens}
		p.tlsClient = &tls.Config{RootCAs: serverCA.pool(), Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	})
	p := c.procs[0]
	r := p.must(t, "POST", "/v1/locks/x?ttl=1m", 200)
	assert.NotEmpty(t, r.Lease)
	p.must(t, "POST", "/v1/leader/transfer", 403)
	admin := p.api
	admin.Token = "admin-token-0123456789"
	admin.must(t, "GET", "/v1/status", 200)

	noCert := p.api
	noCert.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: serverCA.pool(), MinVersion: tls.VersionTLS12},
	}}
	_, _, err := noCert.call(t.Context(), "GET", "/v1/locks")
	require.Error(t, err, "no client certificate: refused in the handshake")
	plain := p.api
	plain.Base = strings.Replace(plain.Base, "https://", "http://", 1)
	plain.Client = &http.Client{Timeout: 5 * time.Second}
	code, _, _ := plain.call(t.Context(), "GET", "/v1/locks")
	assert.NotEqual(t, http.StatusOK, code, "plain HTTP is not served")
}
