package lockhttp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lockhttp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// api is an HTTP client of one handler.
type api struct {
	t     *testing.T
	base  string
	token string // bearer token, if any
}

// resp is one answer: status and decoded JSON body.
type resp struct {
	code int
	body map[string]any
	raw  []byte
}

func (r resp) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

func (r resp) num(key string) uint64 {
	v, _ := r.body[key].(float64)
	return uint64(v)
}

func (a api) do(method, path string, q url.Values) resp {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := a.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	require.NoError(a.t, err)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	require.NoError(a.t, err)
	out := resp{code: res.StatusCode, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		require.NoError(a.t, json.Unmarshal(raw, &out.body), "%s %s: %s", method, path, raw)
	}
	return out
}

func vals(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// serve starts an HTTP server of a handler of cfg; both stop with t.
func serve(t *testing.T, cfg lockhttp.Config) (api, *lockhttp.Handler) {
	t.Helper()
	h, err := lockhttp.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, h.Close())
	})
	return api{t: t, base: srv.URL}, h
}

// cluster starts a 3-node cluster at protocol level 3 with one handler
// per node.
func cluster(t *testing.T) (*testcluster.Cluster, []api) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Size: 3})
	c.WaitProtocol(3)
	apis := make([]api, c.Size())
	for i := range c.Size() {
		apis[i], _ = serve(t, lockhttp.Config{Locker: c.Node(i), OpTimeout: 10 * time.Second})
	}
	return c, apis
}

// localLocker is a Locker of one node that is not a ClientSessions: the
// handler runs in local mode.
func localLocker(t *testing.T) lock.Locker {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Size: 1})
	l, err := c.NewLocker(context.Background(), 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}
