package transport

import (
	"crypto/tls"
	"net"
)

// checkTLS rejects a Config.TLS that could not authenticate peers.
func checkTLS(c *tls.Config) error {
	switch {
	case len(c.Certificates) == 0 && (c.GetCertificate == nil || c.GetClientCertificate == nil):
		return invalid("TLS.Certificates", "a certificate is required, presented as server and as client "+
			"(Certificates, or both GetCertificate and GetClientCertificate)")
	case c.RootCAs == nil && c.ClientCAs == nil:
		return invalid("TLS.RootCAs", "a CA pool is required to verify peers (RootCAs, or ClientCAs)")
	case c.InsecureSkipVerify:
		return invalid("TLS.InsecureSkipVerify", "peers must be verified")
	case c.ClientAuth != tls.NoClientCert && c.ClientAuth != tls.RequireAndVerifyClientCert:
		return invalid("TLS.ClientAuth", "%v is weaker than RequireAndVerifyClientCert", c.ClientAuth)
	}
	return nil
}

// serverTLS derives the listener's config: peers must present a
// certificate that verifies against the CA.
func serverTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.ClientCAs == nil {
		c.ClientCAs = c.RootCAs
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS13
	}
	if c.GetConfigForClient != nil {
		c.GetConfigForClient = enforceClientAuth(c.GetConfigForClient, c)
	}
	return c
}

// clientTLS derives the dialler's config for addr: verify the server
// against RootCAs (or ClientCAs) under ServerName, or the dialled host if
// ServerName is empty; present the same certificate as the server.
func clientTLS(base *tls.Config, addr string) *tls.Config {
	c := base.Clone()
	if c.RootCAs == nil {
		c.RootCAs = c.ClientCAs
	}
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}
