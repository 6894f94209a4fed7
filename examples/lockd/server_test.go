package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// TestServer_StatusCodes covers every status code of the lock endpoints on
// an embedded node.
func TestServer_StatusCodes(t *testing.T) {
	n, a := newSingle(t)
	other, err := n.NewLocker(t.Context()) // another holder than the API's
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	holdElsewhere := func(t *testing.T, name string) uint64 {
		l, err := other.Acquire(t.Context(), name)
		require.NoError(t, err)
		return l.Token()
	}
	grant := func(t *testing.T, path string) uint64 {
		return a.must(t, http.MethodPost, path, http.StatusOK).Token
	}

	for _, tc := range []struct {
		name    string
		method  string
		path    func(t *testing.T) string // may set up state first
		want    int
		wantErr string // the reply's "error" code, for errors
	}{
		// acquire
		{"acquire free", "POST", func(*testing.T) string { return "/v1/locks/free" }, 200, ""},
		{"acquire escaped slash", "POST", func(*testing.T) string { return "/v1/locks/orders%2F42?owner=me" }, 200, ""},
		{"acquire ttl lease", "POST", func(*testing.T) string { return "/v1/locks/ttl?ttl=1m" }, 200, ""},
		{"acquire with wait, free", "POST", func(*testing.T) string { return "/v1/locks/waited?wait=5s" }, 200, ""},
		{"try held", "POST", func(t *testing.T) string { holdElsewhere(t, "held-1"); return "/v1/locks/held-1" }, 409, "held"},
		{"wait=0 is a try", "POST", func(t *testing.T) string { holdElsewhere(t, "held-2"); return "/v1/locks/held-2?wait=0" }, 409, "held"},
		{"wait runs out", "POST", func(t *testing.T) string { holdElsewhere(t, "held-3"); return "/v1/locks/held-3?wait=50ms" }, 408, "timeout"},
		{"held by this API too", "POST", func(t *testing.T) string { grant(t, "/v1/locks/mine"); return "/v1/locks/mine" }, 409, "held"},
		{"unparsable wait", "POST", func(*testing.T) string { return "/v1/locks/x?wait=soon" }, 400, "invalid"},
		{"negative wait", "POST", func(*testing.T) string { return "/v1/locks/x?wait=-1s" }, 400, "invalid"},
		{"unparsable ttl", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=long" }, 400, "invalid"},
		{"empty ttl", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=" }, 400, "invalid"},
		{"ttl below minimum", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=10ms" }, 400, "invalid"},
		{"ttl above maximum", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=25h" }, 400, "invalid"},
		{"owner too long", "POST", func(*testing.T) string {
			return "/v1/locks/x?owner=" + strings.Repeat("o", lock.MaxOwnerLen+1)
		}, 400, "invalid"},
		{"malformed query", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=%zz" }, 400, "invalid"},
		{"semicolon in query", "POST", func(*testing.T) string { return "/v1/locks/x?owner=a;ttl=1m" }, 400, "invalid"},
		{"repeated parameter", "POST", func(*testing.T) string { return "/v1/locks/x?ttl=1m&ttl=2m" }, 400, "invalid"},
		{"unknown parameter", "POST", func(*testing.T) string { return "/v1/locks/x?tll=1m" }, 400, "invalid"},
		{"name with control character", "POST", func(*testing.T) string { return "/v1/locks/a%01b" }, 400, "invalid"},
		{"name too long", "POST", func(*testing.T) string { return "/v1/locks/" + strings.Repeat("n", lock.MaxNameLen+1) }, 400, "invalid"},
		{"name not UTF-8", "POST", func(*testing.T) string { return "/v1/locks/%ff" }, 400, "invalid"},
		{"unescaped slash in name", "POST", func(*testing.T) string { return "/v1/locks/a/b" }, 404, "not_found"},
		{"unescaped slashes in name", "DELETE", func(*testing.T) string { return "/v1/locks/a/b/c?token=1" }, 404, "not_found"},
		{"refresh is POST only", "GET", func(*testing.T) string { return "/v1/locks/a/refresh" }, 404, "not_found"},
		{"method not allowed", "PUT", func(*testing.T) string { return "/v1/locks/x" }, 405, ""},

		// refresh
		{"refresh ttl lease", "POST", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/r1/refresh?token=%d", grant(t, "/v1/locks/r1?ttl=1m"))
		}, 200, ""},
		{"refresh session lease", "POST", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/r2/refresh?token=%d", grant(t, "/v1/locks/r2"))
		}, 200, ""},
		{"refresh unknown token", "POST", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/r3/refresh?token=%d", grant(t, "/v1/locks/r3")+1000)
		}, 409, "not_held"},
		{"refresh released lease", "POST", func(t *testing.T) string {
			tok := grant(t, "/v1/locks/r4")
			a.must(t, "DELETE", fmt.Sprintf("/v1/locks/r4?token=%d", tok), 200)
			return fmt.Sprintf("/v1/locks/r4/refresh?token=%d", tok)
		}, 409, "not_held"},
		{"refresh lease granted elsewhere", "POST", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/r5/refresh?token=%d", holdElsewhere(t, "r5"))
		}, 409, "not_held"},
		{"refresh without token", "POST", func(*testing.T) string { return "/v1/locks/r6/refresh" }, 400, "invalid"},
		{"refresh token zero", "POST", func(*testing.T) string { return "/v1/locks/r6/refresh?token=0" }, 400, "invalid"},
		{"refresh bad token", "POST", func(*testing.T) string { return "/v1/locks/r6/refresh?token=x" }, 400, "invalid"},
		{"refresh bad name", "POST", func(*testing.T) string { return "/v1/locks/%01/refresh?token=1" }, 400, "invalid"},
		{"refresh with a ttl", "POST", func(*testing.T) string { return "/v1/locks/r6/refresh?token=1&ttl=1m" }, 400, "invalid"},
		{"refresh token twice", "POST", func(*testing.T) string { return "/v1/locks/r6/refresh?token=1&token=2" }, 400, "invalid"},

		// release
		{"release", "DELETE", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/d1?token=%d", grant(t, "/v1/locks/d1?ttl=1m"))
		}, 200, ""},
		{"release twice", "DELETE", func(t *testing.T) string {
			tok := grant(t, "/v1/locks/d2")
			a.must(t, "DELETE", fmt.Sprintf("/v1/locks/d2?token=%d", tok), 200)
			return fmt.Sprintf("/v1/locks/d2?token=%d", tok)
		}, 409, "not_held"},
		{"release with another name's token", "DELETE", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/d3?token=%d", grant(t, "/v1/locks/d4"))
		}, 409, "not_held"},
		{"release lease granted elsewhere", "DELETE", func(t *testing.T) string {
			return fmt.Sprintf("/v1/locks/d5?token=%d", holdElsewhere(t, "d5"))
		}, 409, "not_held"},
		{"release without token", "DELETE", func(*testing.T) string { return "/v1/locks/d6" }, 400, "invalid"},
		{"release bad token", "DELETE", func(*testing.T) string { return "/v1/locks/d6?token=-1" }, 400, "invalid"},

		// inspect and status
		{"inspect free", "GET", func(*testing.T) string { return "/v1/locks/never" }, 200, ""},
		{"inspect held", "GET", func(t *testing.T) string { holdElsewhere(t, "i1"); return "/v1/locks/i1" }, 200, ""},
		{"inspect bad name", "GET", func(*testing.T) string { return "/v1/locks/%7F" }, 400, "invalid"},
		{"inspect with a parameter", "GET", func(*testing.T) string { return "/v1/locks/never?wait=1s" }, 400, "invalid"},
		{"status", "GET", func(*testing.T) string { return "/v1/status" }, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			code, r, err := a.call(t.Context(), tc.method, path)
			if tc.want != http.StatusMethodNotAllowed { // the mux answers 405 in plain text
				require.NoError(t, err)
			}
			assert.Equal(t, tc.want, code, "%+v", r)
			assert.Equal(t, tc.wantErr, r.Error, "%+v", r)
		})
	}
}

func TestServer_Replies(t *testing.T) {
	n, a := newSingle(t)

	got := a.must(t, "POST", "/v1/locks/orders%2F42?ttl=30s&owner=alice", 200)
	assert.Equal(t, "orders/42", got.Name)
	assert.NotZero(t, got.Token)

	info := a.must(t, "GET", "/v1/locks/orders%2F42", 200)
	assert.Equal(t, "orders/42", info.Name)
	assert.True(t, info.Held)
	assert.Equal(t, got.Token, info.Token)
	assert.Equal(t, "alice", info.Owner)
	assert.Zero(t, info.Waiters)
	assert.InDelta(t, 30000, info.ExpiresInMS, 5000)

	session := a.must(t, "POST", "/v1/locks/session", 200)
	info = a.must(t, "GET", "/v1/locks/session", 200)
	assert.Equal(t, session.Token, info.Token)
	assert.Zero(t, info.ExpiresInMS, "a session lease has no TTL")

	free := a.must(t, "GET", "/v1/locks/free", 200)
	assert.Equal(t, reply{Name: "free"}, free)

	st := a.must(t, "GET", "/v1/status", 200)
	assert.Equal(t, "local", st.ID)
	assert.Equal(t, "leader", st.State)
	assert.Equal(t, "local", st.Leader)
	assert.NotZero(t, st.Term)
	assert.GreaterOrEqual(t, st.CommitIndex, got.Token)
	assert.GreaterOrEqual(t, st.AppliedIndex, session.Token)
	require.Len(t, st.Members, 1)
	assert.Equal(t, "local", st.Members[0].ID)
	assert.True(t, st.Members[0].Voter)

	rel := a.must(t, "DELETE", fmt.Sprintf("/v1/locks/orders%%2F42?token=%d", got.Token), 200)
	assert.Equal(t, lockBody{Name: "orders/42", Token: got.Token}, lockBody{Name: rel.Name, Token: rel.Token})
	li, err := n.Inspect(t.Context(), "orders/42")
	require.NoError(t, err)
	assert.False(t, li.Held)
}

func TestServer_WaiterGrantedOnRelease(t *testing.T) {
	_, a := newSingle(t)
	first := a.must(t, "POST", "/v1/locks/queue", 200)

	type result struct {
		code int
		r    reply
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, r, err := a.call(t.Context(), "POST", "/v1/locks/queue?wait=20s&owner=second")
		done <- result{code, r, err}
	}()
	require.Eventually(t, func() bool {
		return a.must(t, "GET", "/v1/locks/queue", 200).Waiters == 1
	}, 10*time.Second, 5*time.Millisecond)
	a.must(t, "DELETE", fmt.Sprintf("/v1/locks/queue?token=%d", first.Token), 200)

	res := <-done
	require.NoError(t, res.err)
	require.Equal(t, 200, res.code, "%+v", res.r)
	assert.Greater(t, res.r.Token, first.Token)
	info := a.must(t, "GET", "/v1/locks/queue", 200)
	assert.Equal(t, "second", info.Owner)
	assert.Equal(t, res.r.Token, info.Token)
}

func TestServer_ForgetsEndedLeases(t *testing.T) {
	n, err := node.New(node.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	a, s := serve(t, n)
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.leases)
	}

	ttl := a.must(t, "POST", "/v1/locks/short?ttl=100ms", 200)
	rel := a.must(t, "POST", "/v1/locks/released", 200)
	assert.Equal(t, 2, count())
	a.must(t, "DELETE", fmt.Sprintf("/v1/locks/released?token=%d", rel.Token), 200)

	// The TTL lease expires on its own; the server forgets it and answers
	// 409 for it from then on.
	require.Eventually(t, func() bool { return count() == 0 }, 10*time.Second, 5*time.Millisecond)
	a.must(t, "POST", fmt.Sprintf("/v1/locks/short/refresh?token=%d", ttl.Token), 409)
	a.must(t, "DELETE", fmt.Sprintf("/v1/locks/short?token=%d", ttl.Token), 409)
}

func TestServer_ClosedNode(t *testing.T) {
	n, a := newSingle(t)
	tok := a.must(t, "POST", "/v1/locks/x", 200).Token
	require.NoError(t, n.Close())
	for _, path := range []string{"/v1/locks/y", "/v1/locks/y?wait=1s"} {
		r := a.must(t, "POST", path, 503)
		assert.Equal(t, "closed", r.Error)
	}
	a.must(t, "GET", "/v1/locks/x", 503)
	// Close ended the lease: this replica no longer holds it.
	a.must(t, "DELETE", fmt.Sprintf("/v1/locks/x?token=%d", tok), 409)
}

func TestServer_Cluster(t *testing.T) {
	nodes, apis := newCluster(t, 3)
	li := leaderIndex(nodes)
	require.NotEqual(t, -1, li)
	fi := (li + 1) % 3
	leader, follower := apis[li], apis[fi]

	got := follower.must(t, "POST", "/v1/locks/job?owner=follower", 200)
	info := leader.must(t, "GET", "/v1/locks/job", 200)
	assert.True(t, info.Held)
	assert.Equal(t, got.Token, info.Token)
	assert.Equal(t, "follower", info.Owner)
	assert.Equal(t, "held", leader.must(t, "POST", "/v1/locks/job", 409).Error)

	// Only the replica that granted a lease can refresh or release it.
	third := apis[(li+2)%3]
	third.must(t, "POST", fmt.Sprintf("/v1/locks/job/refresh?token=%d", got.Token), 409)
	third.must(t, "DELETE", fmt.Sprintf("/v1/locks/job?token=%d", got.Token), 409)
	follower.must(t, "POST", fmt.Sprintf("/v1/locks/job/refresh?token=%d", got.Token), 200)
	follower.must(t, "DELETE", fmt.Sprintf("/v1/locks/job?token=%d", got.Token), 200)
	assert.False(t, third.must(t, "GET", "/v1/locks/job", 200).Held, "inspect on any replica is linearizable")

	leaderID := nodes[li].Stats().ID
	for i, a := range apis {
		st := a.must(t, "GET", "/v1/status", 200)
		assert.Equal(t, fmt.Sprintf("n%d", i+1), st.ID)
		assert.Equal(t, leaderID, st.Leader)
		if i == li {
			assert.Equal(t, "leader", st.State)
		} else {
			assert.Equal(t, "follower", st.State)
		}
		var members []memberBody
		for j, n := range nodes {
			members = append(members, memberBody{ID: fmt.Sprintf("n%d", j+1), Addr: n.Addr(), Voter: true})
		}
		assert.ElementsMatch(t, members, st.Members)
	}
}

func TestServer_NoQuorum(t *testing.T) {
	t.Parallel()
	nodes, apis := newCluster(t, 3)
	a := apis[0]
	// The same node with a short timeout for calls without a wait.
	s := newServer(nodes[0], nodes[0], testLogger(t))
	s.opTimeout = 300 * time.Millisecond
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	short := api{base: ts.URL, client: ts.Client()}
	held := short.must(t, "POST", "/v1/locks/held", 200)

	// Two of three stop: the last one cannot commit anything.
	var wg sync.WaitGroup
	for i := 1; i < 3; i++ {
		wg.Go(func() { _ = nodes[i].Close() })
	}
	wg.Wait()

	// Status still answers: this node's view, without a leader.
	require.Eventually(t, func() bool {
		st := a.must(t, "GET", "/v1/status", 200)
		return st.Leader == "" && st.State != "leader"
	}, 10*time.Second, 10*time.Millisecond)

	r := a.must(t, "POST", "/v1/locks/held?wait=300ms", 503)
	assert.Equal(t, "no_quorum", r.Error, "no quorum within the wait is not a timeout: %+v", r)
	a.must(t, "POST", "/v1/locks/free?wait=300ms", 503)
	for _, path := range []string{"/v1/locks/free", "/v1/locks/free?ttl=1s"} {
		assert.Equal(t, "no_quorum", short.must(t, "POST", path, 503).Error)
	}
	short.must(t, "GET", "/v1/locks/held", 503)
	short.must(t, "POST", fmt.Sprintf("/v1/locks/held/refresh?token=%d", held.Token), 503)
	short.must(t, "DELETE", fmt.Sprintf("/v1/locks/held?token=%d", held.Token), 503)
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err    error
		waited bool
		want   int
	}{
		{fmt.Errorf("x: %w", lock.ErrInvalidName), false, 400},
		{lock.ErrInvalidOption, true, 400},
		{fmt.Errorf("%w: ttl: x", errBadParam), true, 400},
		{lock.ErrHeld, false, 409},
		{lock.ErrNotHeld, false, 409},
		{fmt.Errorf("node: rejected: %w: fsm: limit reached", lock.ErrLimit), true, 429},
		{fmt.Errorf("%w: %w", lock.ErrNoQuorum, context.DeadlineExceeded), true, 503},
		// A wait that ran out while the node waited for a new session it
		// could not open (no quorum): the node's error wraps both.
		{fmt.Errorf("acquire %q: %w: waiting for a new session: %w (last attempt: %w)",
			"x", lock.ErrNoQuorum, context.DeadlineExceeded, errors.New("no leader")), true, 503},
		{lock.ErrClosed, false, 503},
		{lock.ErrLost, false, 503},
		{fmt.Errorf("acquire: %w", context.DeadlineExceeded), true, 408},
		{context.DeadlineExceeded, false, 503},
		{context.Canceled, true, 503},
		{fmt.Errorf("surprise"), false, 500},
	} {
		got, _ := statusOf(tc.err, tc.waited)
		assert.Equal(t, tc.want, got, "%v (waited %v)", tc.err, tc.waited)
	}
}
