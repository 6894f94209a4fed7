package lockhttp_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lockhttp"
)

// A waiting acquire is granted when the holder releases, at another
// replica, by key.
func TestCluster_WaiterGrantedOnRelease(t *testing.T) {
	_, apis := cluster(t)
	first := apis[0].do("POST", "/v1/locks/queue", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, first.code)
	s := apis[1].do("POST", "/v1/sessions", vals("ttl", "1h"))
	require.Equal(t, http.StatusOK, s.code)

	done := make(chan resp, 1)
	go func() {
		done <- apis[1].do("POST", "/v1/locks/queue", vals("session", s.str("session"), "wait", "20s", "owner", "second"))
	}()
	require.Eventually(t, func() bool {
		return apis[2].do("GET", "/v1/locks/queue", nil).num("waiters") == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusOK, apis[2].do("DELETE", "/v1/locks/queue", vals("lease", first.str("lease"))).code)

	r := <-done
	require.Equal(t, http.StatusOK, r.code, "%s", r.raw)
	assert.Greater(t, r.num("token"), first.num("token"))
	info := apis[0].do("GET", "/v1/locks/queue", nil)
	assert.Equal(t, "second", info.str("owner"))
	assert.Equal(t, r.num("token"), info.num("token"))
}

// A stopped node answers 503 closed; the store, not the handler, held the
// keyed lease, so nothing is lost with it.
func TestCluster_ClosedNode(t *testing.T) {
	c, apis := cluster(t)
	r := apis[0].do("POST", "/v1/locks/x", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, r.code)
	key := r.str("lease")
	c.Close(0)
	for _, q := range [][]string{{"ttl", "1m"}, {"ttl", "1m", "wait", "1s"}} {
		r := apis[0].do("POST", "/v1/locks/y", vals(q...))
		assert.Equal(t, http.StatusServiceUnavailable, r.code, "%s", r.raw)
		assert.Equal(t, "closed", r.str("error"))
	}
	assert.Equal(t, http.StatusServiceUnavailable, apis[0].do("GET", "/v1/locks/x", nil).code)
	r = apis[1].do("DELETE", "/v1/locks/x", vals("lease", key))
	assert.Equal(t, http.StatusOK, r.code, "the lease outlived the replica that granted it: %s", r.raw)
}

// Without a quorum every call that needs the store answers 503 no_quorum
// within its bound; a wait that runs out without a quorum is no timeout.
func TestCluster_NoQuorum(t *testing.T) {
	c, apis := cluster(t)
	short, _ := serve(t, lockhttp.Config{Locker: c.Node(0), OpTimeout: 300 * time.Millisecond})
	held := apis[0].do("POST", "/v1/locks/held", vals("ttl", "1m"))
	require.Equal(t, http.StatusOK, held.code)
	s := apis[0].do("POST", "/v1/sessions", vals("ttl", "1h"))
	require.Equal(t, http.StatusOK, s.code)

	var wg sync.WaitGroup
	for i := 1; i < 3; i++ {
		wg.Go(func() { c.Kill(i) })
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		st := apis[0].do("GET", "/v1/status", nil)
		return st.str("leader") == "" && st.str("state") != "leader"
	}, 10*time.Second, 10*time.Millisecond)

	r := short.do("POST", "/v1/locks/held", vals("ttl", "1m", "wait", "300ms"))
	assert.Equal(t, http.StatusServiceUnavailable, r.code)
	assert.Equal(t, "no_quorum", r.str("error"), "no quorum within the wait is not a timeout: %s", r.raw)
	for _, call := range []struct {
		method, path string
		q            []string
	}{
		{"POST", "/v1/locks/free", []string{"ttl", "1s"}},
		{"POST", "/v1/locks/free", []string{"session", s.str("session")}},
		{"GET", "/v1/locks/held", nil},
		{"POST", "/v1/locks/held/refresh", []string{"lease", held.str("lease")}},
		{"DELETE", "/v1/locks/held", []string{"lease", held.str("lease")}},
		{"PUT", "/v1/sessions/" + s.str("session"), nil},
		{"DELETE", "/v1/sessions/" + s.str("session"), nil},
		{"POST", "/v1/sessions", nil},
	} {
		r := short.do(call.method, call.path, vals(call.q...))
		assert.Equal(t, http.StatusServiceUnavailable, r.code, "%s %s: %s", call.method, call.path, r.raw)
		assert.Equal(t, "no_quorum", r.str("error"), "%s %s", call.method, call.path)
	}
}
