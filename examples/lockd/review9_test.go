package main

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIGHUP is lockd's "re-read the tokens file" (README, -http-tokens). A
// lockd without -http-tokens that gets one (a service manager's reload, a
// closed terminal) must not die of it: it goes on serving, and a later
// SIGTERM stops it gracefully (exit status 0). Today SIGHUP is handled
// only when -http-tokens is given; otherwise its default action kills the
// replica at once, with no graceful shutdown.
func TestReview9_SIGHUPWithoutTokensDoesNotKill(t *testing.T) {
	bin := buildLockd(t)
	c := startProcCluster(t, bin, 1)
	p := c.procs[0]
	p.must(t, http.MethodGet, "/healthz", http.StatusOK)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	// If SIGHUP is handled, the process serves on; if it kills, the
	// request fails or terminate reports the signal.
	code, _, err := p.call(t.Context(), http.MethodGet, "/healthz")
	if err == nil {
		assert.Equal(t, http.StatusOK, code)
	}
	assert.NoError(t, p.terminate(30*time.Second), "lockd died of SIGHUP instead of stopping gracefully on SIGTERM")
}
