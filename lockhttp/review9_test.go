package lockhttp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lockhttp"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A session's secret never reaches a log (DESIGN.md, "Authentication"),
// whatever spelling of the path the client chose: a client that escapes
// the '.' of the session string (as %2E, which the mux unescapes, so the
// renew works) must not see its secret in the request log. logPath looks
// for a literal '.' in the escaped path and logs the rest whole.
func TestReview9_SessionSecretNotLoggedWhenDotEscaped(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	require.Eventually(t, func() bool { return c.Node(0).Stats().Protocol >= 3 }, 15*time.Second, 10*time.Millisecond)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, _ := serve(t, lockhttp.Config{Locker: c.Node(0), Logger: log, OpTimeout: 10 * time.Second})

	r := a.do("POST", "/v1/sessions", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	session := r.str("session")
	id, secret, ok := strings.Cut(session, ".")
	require.True(t, ok, session)

	r = a.do("PUT", "/v1/sessions/"+id+"%2E"+secret, nil)
	require.Equal(t, http.StatusOK, r.code, "the escaped spelling is the same session: %s", r.raw)
	r = a.do("DELETE", "/v1/sessions/"+id+"%2e"+secret, nil)
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)

	require.Contains(t, logs.String(), "/v1/sessions/"+id, "the requests were logged")
	assert.NotContains(t, logs.String(), secret, "the session's secret is in the request log")
}

// A local-mode handler that has closed answers an acquire as DESIGN.md
// says a closed backend is answered: 503 "closed". Today the lease is
// granted, released again, and the caller gets 500 "internal" (an
// undocumented status, logged as a server failure).
func TestReview9_LocalAcquireAfterCloseIsClosed(t *testing.T) {
	l := localLocker(t)
	a, h := serve(t, lockhttp.Config{Locker: l})
	require.NoError(t, h.Close())

	r := a.do("POST", "/v1/locks/x", vals("ttl", "1m"))
	assert.Equal(t, http.StatusServiceUnavailable, r.code, "%s", r.raw)
	assert.Equal(t, "closed", r.str("error"), "%s", r.raw)
	info, err := l.Inspect(context.Background(), "x")
	require.NoError(t, err)
	assert.False(t, info.Held, "no lease is left behind")
}

// Every error answer is JSON {"error","detail"} (DESIGN.md, "Errors"): a
// client in another language decodes every non-2xx the same way. The
// mux's own answers (no such route, a method the route does not take)
// are text/plain today.
func TestReview9_MuxErrorsAreJSON(t *testing.T) {
	l := localLocker(t)
	a, _ := serve(t, lockhttp.Config{Locker: l})
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/v1/nope", http.StatusNotFound},
		{"GET", "/v1/locks/", http.StatusNotFound},
		{"PATCH", "/v1/locks/x", http.StatusMethodNotAllowed},
		{"GET", "/v1/leader/transfer", http.StatusMethodNotAllowed},
	} {
		r := a.do(tc.method, tc.path, nil)
		assert.Equal(t, tc.code, r.code, "%s %s", tc.method, tc.path)
		assert.NotEmpty(t, r.str("error"), "%s %s: an error body in JSON, got %q", tc.method, tc.path, r.raw)
	}
}
