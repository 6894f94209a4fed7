package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lockhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a replica's API with admin and client tokens, in files.
type server struct {
	url, admin, client string
	c                  *testcluster.Cluster
	at                 int
}

func start(t *testing.T) *server {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Size: 3})
	at := c.Leader()
	require.Eventually(t, func() bool { return c.Node(at).Stats().Protocol >= 3 }, 15*time.Second, 10*time.Millisecond)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("admin-token-0123456789 admin\nclient-token-0123456789 client\n"), 0o600))
	tk, err := lockhttp.LoadTokens(tokens)
	require.NoError(t, err)
	h, err := lockhttp.New(lockhttp.Config{Locker: c.Node(at), Authenticate: tk.Authenticate, OpTimeout: 10 * time.Second})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s := &server{url: srv.URL, c: c, at: at, admin: filepath.Join(dir, "admin"), client: filepath.Join(dir, "client")}
	require.NoError(t, os.WriteFile(s.admin, []byte("admin-token-0123456789\n"), 0o600))
	require.NoError(t, os.WriteFile(s.client, []byte("client-token-0123456789"), 0o600))
	return s
}

// ctl runs lockctl with args against s with the token in tokenFile.
func (s *server) ctl(t *testing.T, tokenFile string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	all := append([]string{"-addr", s.url, "-token-file", tokenFile}, args...)
	code = run(context.Background(), all, &out, &errs)
	return code, out.String(), errs.String()
}

func TestLockctl(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	n := s.c.Node(s.at)
	cs, err := n.OpenClientSession(ctx, time.Hour, "web-1")
	require.NoError(t, err)
	held, err := n.AcquireFor(ctx, cs, "orders/42", lock.WithOwner("job-7"))
	require.NoError(t, err)
	other, err := n.OpenClientSession(ctx, time.Hour, "web-2")
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() {
		_, err := n.AcquireFor(ctx, other, "orders/42", lock.WithOwner("job-8"))
		waited <- err
	}()
	keyed, err := n.AcquireKeyed(ctx, "tickets/9", lock.WithTTL(time.Hour))
	require.NoError(t, err)

	code, out, errs := s.ctl(t, s.client, "status")
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "leader")
	code, out, _ = s.ctl(t, s.client, "members")
	require.Equal(t, exitOK, code)
	assert.Equal(t, 4, strings.Count(out, "\n"), "a header and three members: %s", out)
	assert.Contains(t, out, "voter, leader")

	code, out, _ = s.ctl(t, s.client, "locks")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "orders/42")
	assert.Contains(t, out, "tickets/9")
	code, out, _ = s.ctl(t, s.client, "locks", "orders/")
	require.Equal(t, exitOK, code)
	assert.NotContains(t, out, "tickets/9")
	code, out, _ = s.ctl(t, s.client, "-json", "locks", "tickets/")
	require.Equal(t, exitOK, code)
	var page struct{ Locks []struct{ Name string } }
	require.NoError(t, json.Unmarshal([]byte(out), &page))
	assert.Equal(t, "tickets/9", page.Locks[0].Name)

	require.Eventually(t, func() bool {
		_, out, _ := s.ctl(t, s.client, "inspect", "orders/42")
		return strings.Contains(out, "job-8")
	}, 10*time.Second, 10*time.Millisecond, "the waiter appears in the queue")
	code, out, _ = s.ctl(t, s.client, "inspect", "orders/42")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "job-7")
	assert.Contains(t, out, strconv.FormatUint(held.Token, 10))
	code, out, _ = s.ctl(t, s.client, "inspect", "free")
	require.Equal(t, exitOK, code)
	assert.Equal(t, "free: free\n", out)

	code, out, _ = s.ctl(t, s.admin, "sessions")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "web-1")
	assert.Contains(t, out, "web-2")

	// Admin only: a client token is refused (3).
	code, _, errs = s.ctl(t, s.client, "revoke", "orders/42", strconv.FormatUint(held.Token, 10))
	assert.Equal(t, exitRefused, code)
	assert.Contains(t, errs, "forbidden")
	code, _, _ = s.ctl(t, s.client, "sessions")
	assert.Equal(t, exitRefused, code)

	code, out, errs = s.ctl(t, s.admin, "revoke", "tickets/9", strconv.FormatUint(keyed.Token, 10))
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "tickets/9")
	code, _, errs = s.ctl(t, s.admin, "revoke", "tickets/9", "1")
	assert.Equal(t, exitRefused, code, "not held with that token")
	assert.Contains(t, errs, "not_held")

	file := filepath.Join(t.TempDir(), "backup")
	code, out, errs = s.ctl(t, s.admin, "snapshot", "save", file)
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "saved")
	info, err := os.Stat(file)
	require.NoError(t, err)
	assert.Positive(t, info.Size())

	code, _, errs = s.ctl(t, s.admin, "transfer-leadership")
	require.Equal(t, exitOK, code, errs)
	code, _, errs = s.ctl(t, s.admin, "transfer-leadership")
	assert.Equal(t, exitRefused, code, "no longer the leader: %s", errs)
	assert.Contains(t, errs, "not_leader")

	_, err = n.ReleaseKey(ctx, "orders/42", held.Key)
	require.NoError(t, err)
	require.NoError(t, <-waited)
}

func TestLockctl_UsageAndFailures(t *testing.T) {
	var out, errs bytes.Buffer
	for _, args := range [][]string{
		{}, {"nope"}, {"inspect"}, {"revoke", "x"}, {"revoke", "x", "abc"}, {"locks", "a", "b"},
		{"snapshot", "load", "f"}, {"status", "extra"}, {"-bogus", "status"}, {"-cert", "c", "status"},
	} {
		assert.Equal(t, exitUsage, run(context.Background(), args, &out, &errs), "%q", args)
	}
	code := run(context.Background(), []string{"-addr", "http://127.0.0.1:1", "-timeout", "2s", "status"}, &out, &errs)
	assert.Equal(t, exitFailed, code, "nobody answers")

	s := start(t)
	code, _, errs2 := s.ctl(t, filepath.Join(t.TempDir(), "missing"), "status")
	assert.Equal(t, exitUsage, code, errs2)
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	code, _, errs2 = s.ctl(t, empty, "status")
	assert.Equal(t, exitRefused, code, "unauthenticated")
	assert.Contains(t, errs2, "unauthenticated")
}
