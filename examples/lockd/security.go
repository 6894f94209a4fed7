package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/quorumlock/quorumlock/lockhttp"
	"github.com/quorumlock/quorumlock/node"
)

// httpTLS is the HTTPS config of -http-tls-cert/-key (and client
// certificates of -http-client-ca), or nil for plain HTTP.
func (c config) httpTLS() (*tls.Config, error) {
	if c.httpCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.httpCert, c.httpKey)
	if err != nil {
		return nil, fmt.Errorf("-http-tls-cert/-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.httpClientCA != "" {
		pool, err := loadPool(c.httpClientCA)
		if err != nil {
			return nil, fmt.Errorf("-http-client-ca: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// authenticator is the API's Config.Authenticate: a bearer token of
// -http-tokens gives its role; otherwise a client certificate verified
// against -http-client-ca gives the client role. nil (everyone is admin)
// without either. tokens is nil without -http-tokens.
func (c config) authenticator(tokens *lockhttp.Tokens) func(*http.Request) (lockhttp.Role, bool) {
	if !c.httpAuth() {
		return nil
	}
	return func(r *http.Request) (lockhttp.Role, bool) {
		if tokens != nil && r.Header.Get("Authorization") != "" {
			return tokens.Authenticate(r) // a token given is the credential: a wrong one is refused
		}
		if c.httpClientCA != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			return lockhttp.RoleClient, true
		}
		return lockhttp.RoleNone, false
	}
}

// clusterSecurity sets the node's mutual TLS and cluster key.
func (c config) clusterSecurity(cfg *node.Config) error {
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return fmt.Errorf("-tls-cert/-key: %w", err)
		}
		pool, err := loadPool(c.tlsCA)
		if err != nil {
			return fmt.Errorf("-tls-ca: %w", err)
		}
		cfg.TLS = &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
			MinVersion: tls.VersionTLS13,
		}
	}
	if c.clusterKeyFile != "" {
		key, err := os.ReadFile(c.clusterKeyFile)
		if err != nil {
			return fmt.Errorf("-cluster-key-file: %w", err)
		}
		cfg.ClusterKey = bytes.TrimSpace(key)
	}
	return nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in " + path)
	}
	return pool, nil
}

// warnExposure says at start what is not protected.
func (c config) warnExposure(log *slog.Logger) {
	if !c.httpAuth() {
		log.Warn("the HTTP API has no authentication: every caller is admin", "http", c.http, "loopback_only", loopback(c.http))
	}
	if c.httpCert == "" && !loopback(c.http) {
		log.Warn("the HTTP API is plain HTTP: session strings and lease keys cross the network in clear", "http", c.http)
	}
	if c.addr != "" && !c.clusterAuth() {
		log.Warn("replicas are not authenticated: anyone who reaches the cluster port can speak Raft", "addr", c.addr)
	}
}
