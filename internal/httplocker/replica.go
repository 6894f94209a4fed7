package httplocker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Replica is one lockd replica's HTTP API.
type Replica struct {
	Base   string       // "http://host:port" or "https://host:port"
	Client *http.Client // with a timeout: Call waits for the whole reply
	Token  string       // bearer token, if any
}

// Reply is the union of the JSON bodies the API returns that a client
// reads (lockhttp/DESIGN.md, "Endpoints").
type Reply struct {
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

// Call sends one request with no body and decodes the JSON reply (a reply
// of another content type leaves Reply empty). It returns transport and
// decoding errors, never panics or fails otherwise, so it is safe in
// polling loops.
func (r Replica) Call(ctx context.Context, method, path string) (int, Reply, error) {
	var rep Reply
	req, err := http.NewRequestWithContext(ctx, method, r.Base+path, nil)
	if err != nil {
		return 0, rep, err
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return 0, rep, err
	}
	defer func() { _ = resp.Body.Close() }()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp.StatusCode, rep, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return resp.StatusCode, rep, fmt.Errorf("%s %s: decode reply: %w", method, path, err)
	}
	return resp.StatusCode, rep, nil
}
