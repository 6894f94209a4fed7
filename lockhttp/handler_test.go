package lockhttp_test

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/lockhttp"
)

// A client session and its leases used through every replica's handler.
func TestCluster_SessionAndKeysAtEveryReplica(t *testing.T) {
	_, apis := cluster(t)
	r := apis[0].do("POST", "/v1/sessions", vals("ttl", "5s", "owner", "web-7"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	session := r.str("session")
	assert.Equal(t, uint64(5000), r.num("ttl_ms"))
	id, _, ok := strings.Cut(session, ".")
	require.True(t, ok, session)

	r = apis[1].do("PUT", "/v1/sessions/"+session, nil)
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, uint64(5000), r.num("ttl_ms"))
	r = apis[2].do("GET", "/v1/sessions/"+id, nil)
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, "web-7", r.str("owner"))
	assert.Equal(t, id, r.str("id"))

	r = apis[1].do("POST", "/v1/locks/job%2F1", vals("session", session, "owner", "runner"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, "job/1", r.str("name"))
	assert.Equal(t, id, r.str("session"))
	assert.Zero(t, r.num("ttl_ms"), "a session lease")
	key, token := r.str("lease"), r.num("token")
	require.NotEmpty(t, key)

	r = apis[2].do("POST", "/v1/locks/job%2F1", vals("session", session))
	require.Equal(t, http.StatusOK, r.code, "asking again re-attaches: %s", r.raw)
	assert.Equal(t, key, r.str("lease"), "same lease, same key")
	assert.Equal(t, token, r.num("token"))

	r = apis[0].do("GET", "/v1/locks/job%2F1", nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, true, r.body["held"])
	assert.Equal(t, "session", r.str("kind"))
	assert.Equal(t, id, r.str("holder"))
	assert.Equal(t, "runner", r.str("owner"))
	r = apis[2].do("GET", "/v1/locks", vals("prefix", "job/"))
	require.Equal(t, http.StatusOK, r.code)
	require.Len(t, r.body["locks"], 1)

	r = apis[2].do("POST", "/v1/locks/job%2F1/refresh", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, token, r.num("token"))
	r = apis[0].do("DELETE", "/v1/locks/job%2F1", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, token, r.num("token"))
	r = apis[1].do("DELETE", "/v1/locks/job%2F1", vals("lease", key))
	assert.Equal(t, http.StatusConflict, r.code)
	assert.Equal(t, "not_held", r.str("error"))

	// A TTL lease of the session, then the session's end at another
	// replica releases it.
	r = apis[0].do("POST", "/v1/locks/t", vals("session", session, "ttl", "1h"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, uint64(time.Hour/time.Millisecond), r.num("ttl_ms"))
	r = apis[2].do("DELETE", "/v1/sessions/"+session, nil)
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	r = apis[1].do("GET", "/v1/locks/t", nil)
	assert.Equal(t, false, r.body["held"])
	for _, a := range apis {
		r = a.do("PUT", "/v1/sessions/"+session, nil)
		assert.Equal(t, http.StatusNotFound, r.code)
		assert.Equal(t, "session_expired", r.str("error"))
	}
	r = apis[1].do("POST", "/v1/locks/t", vals("session", session))
	assert.Equal(t, http.StatusNotFound, r.code)
	r = apis[1].do("GET", "/v1/sessions/"+id, nil)
	assert.Equal(t, http.StatusNotFound, r.code)
}

// A keyed TTL lease of no session, refreshed and released elsewhere.
func TestCluster_KeyedTTLLease(t *testing.T) {
	_, apis := cluster(t)
	r := apis[0].do("POST", "/v1/locks/seat-1", vals("ttl", "30s"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	key := r.str("lease")
	assert.Empty(t, r.str("session"))
	r = apis[1].do("POST", "/v1/locks/seat-1", vals("ttl", "30s"))
	assert.Equal(t, http.StatusConflict, r.code, "one try: held")
	assert.Equal(t, "held", r.str("error"))
	r = apis[1].do("POST", "/v1/locks/seat-1", vals("ttl", "30s", "wait", "100ms"))
	assert.Equal(t, http.StatusRequestTimeout, r.code, "the wait ran out: %s", r.raw)
	r = apis[2].do("GET", "/v1/locks/seat-1", nil)
	assert.Equal(t, uint64(0), r.num("waiters"), "the wait that ran out withdrew its claim")
	r = apis[2].do("POST", "/v1/locks/seat-1/refresh", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, uint64(30000), r.num("ttl_ms"))
	r = apis[1].do("DELETE", "/v1/locks/seat-1", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
}

// Bad input is 400 with a reason, before anything reaches the store.
func TestHandler_BadInput(t *testing.T) {
	_, apis := cluster(t)
	a := apis[0]
	for _, tc := range []struct {
		method, path string
		q            url.Values
		says         string
	}{
		{"POST", "/v1/locks/x", nil, "session"},
		{"POST", "/v1/locks/x", vals("owner", "o"), "ttl"},
		{"POST", "/v1/locks/x", vals("ttl", "0"), "TTL"},
		{"POST", "/v1/locks/x", vals("ttl", "-1s"), "duration"},
		{"POST", "/v1/locks/x", vals("tll", "1m"), "unknown parameter"},
		{"POST", "/v1/locks/x", vals("session", "nope"), "client session"},
		{"POST", "/v1/locks/x", vals("ttl", "1m", "wait", "soon"), "wait"},
		{"DELETE", "/v1/locks/x", vals("token", "5"), "lease"},
		{"DELETE", "/v1/locks/x", nil, "lease"},
		{"DELETE", "/v1/locks/x", vals("lease", "AAAA"), "lease key"},
		{"POST", "/v1/locks/x/refresh", vals("lease", "AAAA", "token", "1"), "lease"},
		{"POST", "/v1/locks/x/revoke", nil, "token"},
		{"POST", "/v1/locks/x/revoke", vals("token", "0"), "token"},
		{"GET", "/v1/locks/x", vals("queue", "-1"), "queue"},
		{"GET", "/v1/locks", vals("limit", "x"), "limit"},
		{"POST", "/v1/sessions", vals("ttl", "1ms"), "TTL"},
		{"POST", "/v1/sessions", vals("ttl", "2h"), "TTL"},
		{"PUT", "/v1/sessions/abc", nil, "client session"},
		{"GET", "/v1/sessions/xyz", nil, "session"},
	} {
		r := a.do(tc.method, tc.path, tc.q)
		assert.Equal(t, http.StatusBadRequest, r.code, "%s %s?%s: %s", tc.method, tc.path, tc.q.Encode(), r.raw)
		assert.Equal(t, "invalid", r.str("error"))
		assert.Contains(t, r.str("detail"), tc.says, "%s %s?%s", tc.method, tc.path, tc.q.Encode())
	}
	r := a.do("POST", "/v1/locks/a/b", vals("ttl", "1m"))
	assert.Equal(t, http.StatusNotFound, r.code, "an unescaped '/' in a name")
}

func TestHandler_Auth(t *testing.T) {
	c, _ := cluster(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(file, []byte("# comment\nclient-token-0123456789 client\n\nadmin-token-0123456789 admin\n"), 0o600))
	tokens, err := lockhttp.LoadTokens(file)
	require.NoError(t, err)
	a, _ := serve(t, lockhttp.Config{Locker: c.Node(0), Authenticate: tokens.Authenticate, OpTimeout: 200 * time.Millisecond})

	r := a.do("POST", "/v1/locks/x", vals("ttl", "1m"))
	assert.Equal(t, http.StatusUnauthorized, r.code)
	assert.Equal(t, "unauthenticated", r.str("error"))
	for _, open := range []string{"/healthz", "/readyz"} {
		assert.Equal(t, http.StatusOK, a.do("GET", open, nil).code, open)
	}
	bad := a
	bad.token = "client-token-012345678X"
	assert.Equal(t, http.StatusUnauthorized, bad.do("GET", "/v1/locks", nil).code)

	client := a
	client.token = "client-token-0123456789"
	r = client.do("POST", "/v1/locks/x", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	token, key := r.num("token"), r.str("lease")
	for _, adminOnly := range []struct{ method, path string }{
		{"POST", "/v1/locks/x/revoke"}, {"POST", "/v1/leader/transfer"}, {"GET", "/v1/snapshot"},
	} {
		r := client.do(adminOnly.method, adminOnly.path, vals("token", "1"))
		assert.Equal(t, http.StatusForbidden, r.code, adminOnly.path)
		assert.Equal(t, "forbidden", r.str("error"))
	}
	admin := a
	admin.token = "admin-token-0123456789"
	r = admin.do("POST", "/v1/locks/x/revoke", vals("token", itoa(token)))
	assert.Equal(t, http.StatusAccepted, r.code, "revoking: the holder has its grace: %s", r.raw)
	r = client.do("POST", "/v1/locks/x/refresh", vals("lease", key))
	assert.Equal(t, http.StatusConflict, r.code, "the holder learns of the revoke at its next refresh")
	r = client.do("DELETE", "/v1/locks/x", vals("lease", key))
	assert.Equal(t, http.StatusOK, r.code, "and acknowledges it by releasing: %s", r.raw)
	assert.Equal(t, false, client.do("GET", "/v1/locks/x", nil).body["held"])

	// Reload: a broken file keeps the old tokens; a good one replaces them.
	require.NoError(t, os.WriteFile(file, []byte("short client\n"), 0o600))
	require.Error(t, tokens.Reload())
	assert.Equal(t, http.StatusOK, client.do("GET", "/v1/locks", nil).code)
	require.NoError(t, os.WriteFile(file, []byte("new-client-token-0123 client\n"), 0o600))
	require.NoError(t, tokens.Reload())
	assert.Equal(t, http.StatusUnauthorized, client.do("GET", "/v1/locks", nil).code)
	client.token = "new-client-token-0123"
	assert.Equal(t, http.StatusOK, client.do("GET", "/v1/locks", nil).code)
}

func TestTokens_BadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":      "",
		"comments":   "# nothing\n",
		"no role":    "abcdefghijklmnopq\n",
		"bad role":   "abcdefghijklmnopq root\n",
		"short":      "abc client\n",
		"three":      "abcdefghijklmnopq client extra\n",
		"duplicated": "abcdefghijklmnopq client\nabcdefghijklmnopq admin\n",
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
		_, err := lockhttp.LoadTokens(file)
		assert.Error(t, err, name)
	}
	_, err := lockhttp.LoadTokens(filepath.Join(dir, "missing"))
	assert.Error(t, err)
}

// Local mode: any Locker; TTL leases held by the handler, keys valid at
// that handler only.
func TestLocal_LeasesOfTheHandler(t *testing.T) {
	l := localLocker(t)
	a, h := serve(t, lockhttp.Config{Locker: l})
	other, _ := serve(t, lockhttp.Config{Locker: l})

	r := a.do("POST", "/v1/sessions", nil)
	assert.Equal(t, http.StatusNotImplemented, r.code)
	r = a.do("POST", "/v1/locks/x", vals("session", "0000000000000001.AAAAAAAAAAAAAAAAAAAAAA"))
	assert.Equal(t, http.StatusNotImplemented, r.code)
	r = a.do("POST", "/v1/locks/x", nil)
	assert.Equal(t, http.StatusBadRequest, r.code, "neither session nor ttl")

	r = a.do("POST", "/v1/locks/x", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	key, token := r.str("lease"), r.num("token")
	r = other.do("DELETE", "/v1/locks/x", vals("lease", key))
	assert.Equal(t, http.StatusConflict, r.code, "a local key works only at its handler")
	r = a.do("POST", "/v1/locks/x/refresh", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, uint64(60000), r.num("ttl_ms"))
	r = a.do("DELETE", "/v1/locks/x", vals("lease", key))
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Equal(t, token, r.num("token"))

	// Close releases what the handler holds.
	r = a.do("POST", "/v1/locks/y", vals("ttl", "1h"))
	require.Equal(t, http.StatusOK, r.code)
	require.NoError(t, h.Close())
	r = other.do("GET", "/v1/locks/y", nil)
	assert.Equal(t, false, r.body["held"], "closing the handler released its lease")
	assert.Equal(t, http.StatusNotImplemented, other.do("GET", "/v1/status", nil).code, "a Locker is no Operator")
}

func TestHandler_OperatorEndpoints(t *testing.T) {
	c, apis := cluster(t)
	leader := c.Leader()
	r := apis[leader].do("GET", "/v1/status", nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, "leader", r.str("state"))
	assert.Equal(t, uint64(fsm.Protocol), r.num("protocol"), "a new cluster runs at this build's level")
	require.Len(t, r.body["members"], 3)

	r = apis[leader].do("GET", "/v1/snapshot", nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.NotEmpty(t, r.raw)

	follower := (leader + 1) % 3
	r = apis[follower].do("POST", "/v1/leader/transfer", nil)
	assert.Equal(t, http.StatusConflict, r.code, "%s", r.raw)
	assert.Equal(t, "not_leader", r.str("error"))
	assert.Contains(t, r.str("detail"), c.ID(leader))
	r = apis[leader].do("POST", "/v1/leader/transfer", nil)
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
}

func TestHandler_Ready(t *testing.T) {
	l := localLocker(t)
	var ready atomic.Bool
	a, _ := serve(t, lockhttp.Config{Locker: l, Ready: func() error {
		if !ready.Load() {
			return errors.New("no leader yet")
		}
		return nil
	}})
	r := a.do("GET", "/readyz", nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.code)
	assert.Contains(t, r.str("detail"), "no leader yet")
	ready.Store(true)
	assert.Equal(t, http.StatusOK, a.do("GET", "/readyz", nil).code)
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/metrics", nil).code, "no Metrics handler")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
