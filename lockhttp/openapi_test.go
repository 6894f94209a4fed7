package lockhttp

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
)

// openAPI is the part of openapi.json these tests read.
type openAPI struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required []string `json:"required"`
		} `json:"schemas"`
	} `json:"components"`
}

type operation struct {
	ID        string `json:"operationId"`
	Role      string `json:"x-role"`
	Responses map[string]struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

func loadOpenAPI(t *testing.T) (openAPI, map[string]operation) {
	t.Helper()
	data, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	var doc openAPI
	require.NoError(t, json.Unmarshal(data, &doc))
	ops := map[string]operation{} // by "METHOD path"
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op operation
			require.NoError(t, json.Unmarshal(raw, &op), "%s %s", method, path)
			ops[strings.ToUpper(method)+" "+path] = op
		}
	}
	return doc, ops
}

// TestOpenAPI_MatchesRoutes: the document lists exactly the handler's
// routes, each with the role the handler demands.
func TestOpenAPI_MatchesRoutes(t *testing.T) {
	_, ops := loadOpenAPI(t)
	h := &Handler{}
	routes := map[string]string{}
	for _, rt := range h.table() {
		routes[rt.method+" "+rt.path] = rt.role.String()
	}
	documented := map[string]string{}
	for k, op := range ops {
		documented[k] = op.Role
	}
	assert.Equal(t, routes, documented)
}

// TestOpenAPI_EveryRouteAnswersAsDocumented calls every documented
// operation on a real cluster, as an admin, as a caller without a token,
// and with a bad parameter where it takes one: each answer's status is
// one the document lists for the operation, with its content type, and a
// JSON body carries the documented schema's required fields.
func TestOpenAPI_EveryRouteAnswersAsDocumented(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	c := testcluster.Start(t, testcluster.Options{Size: 3})
	leader := c.Leader()
	require.Eventually(t, func() bool { return c.Node(leader).Stats().Protocol >= 3 }, 15*time.Second, 10*time.Millisecond)
	file := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(file, []byte("admin-token-0123456789 admin\n"), 0o600))
	tokens, err := LoadTokens(file)
	require.NoError(t, err)
	h, err := New(Config{
		Locker: c.Node(leader), Authenticate: tokens.Authenticate,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "up 1\n")
		}),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	call := func(token, method, path string) (*http.Response, []byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res, body
	}
	const admin = "admin-token-0123456789"
	decode := func(body []byte) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal(body, &m), "%s", body)
		return m
	}
	// Fixtures: a session and leases for the calls that name them.
	_, body := call(admin, "POST", "/v1/sessions?ttl=1h")
	session := decode(body)["session"].(string)
	id, _, _ := strings.Cut(session, ".")
	lease := func(name string) (key string, token uint64) {
		_, body := call(admin, "POST", "/v1/locks/"+name+"?ttl=1h")
		m := decode(body)
		return m["lease"].(string), uint64(m["token"].(float64))
	}
	key, _ := lease("held")
	_, revokeToken := lease("revoked")
	closing, err := c.Node(leader).OpenClientSession(context.Background(), time.Hour, "")
	require.NoError(t, err)

	happy := map[string]string{ // operationId: path and query of a call that works
		"openSession":        "/v1/sessions?ttl=2s&owner=doc",
		"renewSession":       "/v1/sessions/" + session,
		"closeSession":       "/v1/sessions/" + closing.String(),
		"sessionInfo":        "/v1/sessions/" + id,
		"listSessions":       "/v1/sessions",
		"acquire":            "/v1/locks/free?session=" + session,
		"release":            "/v1/locks/held?lease=" + key,
		"inspect":            "/v1/locks/held?queue=5",
		"refresh":            "/v1/locks/held/refresh?lease=" + key,
		"revoke":             "/v1/locks/revoked/revoke?token=" + strconv.FormatUint(revokeToken, 10),
		"list":               "/v1/locks?prefix=&limit=10",
		"status":             "/v1/status",
		"transferLeadership": "/v1/leader/transfer",
		"snapshot":           "/v1/snapshot",
		"healthz":            "/healthz",
		"readyz":             "/readyz",
		"metrics":            "/metrics",
	}
	bad := map[string]string{ // operationId: a call with a bad parameter
		"openSession":  "/v1/sessions?ttl=1ms",
		"renewSession": "/v1/sessions/nope",
		"sessionInfo":  "/v1/sessions/zz",
		"listSessions": "/v1/sessions?x=1",
		"acquire":      "/v1/locks/free",
		"release":      "/v1/locks/held?token=1",
		"inspect":      "/v1/locks/held?queue=x",
		"refresh":      "/v1/locks/held/refresh",
		"revoke":       "/v1/locks/held/revoke",
		"list":         "/v1/locks?limit=0",
	}
	check := func(what string, op operation, res *http.Response, body []byte) {
		t.Helper()
		resp, ok := op.Responses[strconv.Itoa(res.StatusCode)]
		if !assert.True(t, ok, "%s: status %d is not documented (%s)", what, res.StatusCode, body) {
			return
		}
		ctype, _, _ := strings.Cut(res.Header.Get("Content-Type"), ";")
		content, ok := resp.Content[ctype]
		if !assert.True(t, ok, "%s: %d with content type %q, documented %v", what, res.StatusCode, ctype, slices.Collect(maps.Keys(resp.Content))) {
			return
		}
		if ctype != "application/json" || content.Schema.Ref == "" {
			return
		}
		schema := doc.Components.Schemas[strings.TrimPrefix(content.Schema.Ref, "#/components/schemas/")]
		m := decode(body)
		for _, field := range schema.Required {
			assert.Contains(t, m, field, "%s: %d body %s lacks %q", what, res.StatusCode, body, field)
		}
	}
	byID := map[string]string{} // operationId: "METHOD path"
	for key, op := range ops {
		byID[op.ID] = key
	}
	order := []string{ // release after refresh; the transfer last
		"healthz", "readyz", "metrics", "openSession", "renewSession", "sessionInfo", "listSessions", "closeSession",
		"acquire", "inspect", "list", "refresh", "release", "revoke", "status", "snapshot", "transferLeadership",
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(byID)), order, "a call for every documented operation")
	for _, opID := range order {
		op := ops[byID[opID]]
		method, _, _ := strings.Cut(byID[opID], " ")
		path := happy[opID]
		if op.Role != "none" {
			res, body := call("", method, path)
			check(op.ID+" without a token", op, res, body)
			assert.Equal(t, http.StatusUnauthorized, res.StatusCode, op.ID)
		}
		if b, ok := bad[op.ID]; ok {
			res, body := call(admin, method, b)
			check(op.ID+" with a bad parameter", op, res, body)
			assert.Equal(t, http.StatusBadRequest, res.StatusCode, "%s %s: %s", method, b, body)
		}
		res, body := call(admin, method, path)
		check(op.ID, op, res, body)
		assert.Less(t, res.StatusCode, 300, "%s %s: %s", method, path, body)
	}
	assert.Len(t, happy, len(order))
}
