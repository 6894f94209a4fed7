package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// reply is the union of the JSON bodies the API returns that these tests
// read.
type reply struct {
	// sessions
	Session string `json:"session"`
	TTLMS   int64  `json:"ttl_ms"`
	// locks
	Name        string `json:"name"`
	Token       uint64 `json:"token"`
	Lease       string `json:"lease"`
	Held        bool   `json:"held"`
	Owner       string `json:"owner"`
	Kind        string `json:"kind"`
	Holder      string `json:"holder"`
	Waiters     int    `json:"waiters"`
	ExpiresInMS int64  `json:"expires_in_ms"`
	// errors
	Error  string `json:"error"`
	Detail string `json:"detail"`
	// status
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID    string `json:"id"`
		Addr  string `json:"addr"`
		Voter bool   `json:"voter"`
	} `json:"members"`
}

// api is an HTTP client of one lockd API.
type api struct {
	base   string
	client *http.Client
	token  string // bearer token, if any
}

// call sends one request and decodes the JSON reply. It reports transport
// errors instead of failing, so it is safe in polling loops.
func (a api) call(ctx context.Context, method, path string) (int, reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return 0, reply{}, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r reply
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp.StatusCode, r, nil
	}
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
