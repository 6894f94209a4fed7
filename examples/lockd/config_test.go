package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{
		"-id", "n1", "-addr", "127.0.0.1:7001", "-http", "127.0.0.1:8001", "-data", "/tmp/n1",
		"-peers", "n1=127.0.0.1:7001,n2=127.0.0.1:7002, n3=127.0.0.1:7003", "-log-level", "debug",
	}, io.Discard)
	require.NoError(t, err)
	ncfg, err := c.node(nil)
	require.NoError(t, err)
	assert.Equal(t, node.Config{
		ID: "n1", Addr: "127.0.0.1:7001", DataDir: "/tmp/n1",
		Peers:  []node.Peer{{ID: "n1", Addr: "127.0.0.1:7001"}, {ID: "n2", Addr: "127.0.0.1:7002"}, {ID: "n3", Addr: "127.0.0.1:7003"}},
		Limits: node.Limits{NamesPerSession: 100_000},
	}, ncfg)
	assert.Equal(t, "127.0.0.1:8001", c.http)
	assert.Equal(t, slog.LevelDebug, c.logLevel)

	c, err = parseFlags([]string{"-id", "n4", "-addr", ":7004", "-http", ":8004", "-join", "127.0.0.1:7001", "-session-ttl", "2s", "-insecure"}, io.Discard)
	require.NoError(t, err)
	ncfg, err = c.node(nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7001", ncfg.Join)
	assert.Equal(t, 2*time.Second, ncfg.SessionTTL)
	assert.Equal(t, slog.LevelInfo, c.logLevel)

	c, err = parseFlags([]string{"-id", "solo", "-http", "127.0.0.1:0"}, io.Discard)
	require.NoError(t, err)
	assert.Empty(t, c.addr, "no -addr: a single node without network")
	assert.Nil(t, c.authenticator(nil), "no authentication: every caller is admin")

	c, err = parseFlags([]string{"-id", "solo", "-http", "0.0.0.0:8001", "-http-tokens", "/etc/lockd/tokens"}, io.Discard)
	require.NoError(t, err, "beyond loopback with tokens")
	assert.NotNil(t, c.authenticator(nil))
}

func TestParseFlags_Rejects(t *testing.T) {
	ok := []string{"-id", "n1", "-addr", "127.0.0.1:7001", "-http", "127.0.0.1:8001"}
	for _, args := range [][]string{
		{"-http", "127.0.0.1:8001"},
		{"-id", "n1"},
		append(ok, "-peers", "n1"),
		append(ok, "-peers", "=127.0.0.1:7001"),
		append(ok, "-peers", "n1=localhost"),
		append(ok, "-peers", "n1=127.0.0.1:7001,"),
		append(ok, "-peers", "n1=127.0.0.1:7001", "-join", "127.0.0.1:7002"),
		{"-id", "n1", "-http", "127.0.0.1:8001", "-join", "127.0.0.1:7002"},
		append(ok, "-log-level", "loud"),
		append(ok, "-session-ttl", "soon"),
		append(ok, "-nope"),
		append(ok, "extra"),
		append(ok, "-http-tls-cert", "c.pem"),
		append(ok, "-http-client-ca", "ca.pem"),
		append(ok, "-tls-cert", "c.pem", "-tls-key", "k.pem"),
		{"-id", "n1", "-http", "127.0.0.1:8001", "-tls-cert", "c", "-tls-key", "k", "-tls-ca", "a"},
		// Beyond loopback without protection.
		{"-id", "n1", "-http", "0.0.0.0:8001"},
		{"-id", "n1", "-http", ":8001"},
		{"-id", "n1", "-http", "10.0.0.1:8001", "-http-tls-cert", "c", "-http-tls-key", "k"},
		{"-id", "n1", "-http", "127.0.0.1:8001", "-addr", "0.0.0.0:7001"},
		{"-id", "n1", "-http", "127.0.0.1:8001", "-addr", "10.1.2.3:7001", "-http-tokens", "t"},
	} {
		_, err := parseFlags(args, io.Discard)
		assert.Error(t, err, "%q", args)
	}
}
