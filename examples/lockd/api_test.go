package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/node"
)

// reply is the union of every JSON body the API returns.
type reply struct {
	// locks
	Name        string `json:"name"`
	Token       uint64 `json:"token"`
	Held        bool   `json:"held"`
	Owner       string `json:"owner"`
	Waiters     int    `json:"waiters"`
	ExpiresInMS int64  `json:"expires_in_ms"`
	// errors
	Error  string `json:"error"`
	Detail string `json:"detail"`
	// status: its fields are promoted (and decoded) as reply's own
	statusBody
}

// api is an HTTP client of one lockd API.
type api struct {
	base   string
	client *http.Client
}

// call sends one request and decodes the JSON reply. It reports transport
// errors instead of failing, so it is safe in polling loops.
func (a api) call(ctx context.Context, method, path string) (int, reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return 0, reply{}, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("%s %s: decode reply: %w", method, path, err)
	}
	return resp.StatusCode, r, nil
}

func (a api) must(t *testing.T, method, path string, want int) reply {
	t.Helper()
	code, r, err := a.call(t.Context(), method, path)
	require.NoError(t, err)
	require.Equal(t, want, code, "%s %s: %+v", method, path, r)
	return r
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// serve starts the API of n on an httptest server.
func serve(t *testing.T, n *node.Node) (api, *server) {
	t.Helper()
	s := newServer(n, n, testLogger(t))
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return api{base: ts.URL, client: ts.Client()}, s
}

// newSingle starts one embedded in-memory node and its API.
func newSingle(t *testing.T) (*node.Node, api) {
	t.Helper()
	n, err := node.New(node.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	a, _ := serve(t, n)
	return n, a
}

// newCluster starts size nodes over TCP on loopback, each with its API:
// the first founds the cluster, the others join it. At cleanup every node
// closes at once (one by one, the last ones would wait for a quorum that
// is gone).
func newCluster(t *testing.T, size int) ([]*node.Node, []api) {
	t.Helper()
	nodes := make([]*node.Node, size)
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil {
				wg.Go(func() { _ = n.Close() })
			}
		}
		wg.Wait()
	})
	first, err := node.New(node.Config{ID: "n1", Addr: "127.0.0.1:0", Peers: []node.Peer{{ID: "n1"}}})
	require.NoError(t, err)
	nodes[0] = first
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := 1; i < size; i++ {
		wg.Go(func() {
			nodes[i], errs[i] = node.New(node.Config{ID: fmt.Sprintf("n%d", i+1), Addr: "127.0.0.1:0", Join: first.Addr()})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	apis := make([]api, size)
	for i, n := range nodes {
		apis[i], _ = serve(t, n)
	}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			m, err := n.Members()
			if id, _ := n.Leader(); err != nil || len(m) != size || id == "" {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
	return nodes, apis
}

func leaderIndex(nodes []*node.Node) int {
	for i, n := range nodes {
		if n != nil && n.Stats().State == "leader" {
			return i
		}
	}
	return -1
}
