package lockhttp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// FuzzParams feeds an arbitrary lock name (the {name} path value, as the
// mux unescaped it) and raw query string to the parameter parsers. They
// never panic, and each either returns the values the query says, within
// lock's limits, or an error statusOf answers with a 4xx. Seeds:
// testdata/fuzz/FuzzParams, written by TestFuzzParams_seeds.
func FuzzParams(f *testing.F) {
	h := &Handler{cfg: Config{MaxWait: DefaultMaxWait}}
	f.Fuzz(func(t *testing.T, name, rawQuery string) {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/v1/locks/x", RawQuery: rawQuery}}
		r.SetPathValue("name", name)

		if p, err := h.parseAcquire(r); err != nil {
			requireClientError(t, err)
		} else {
			q := requireWellFormed(t, rawQuery, "session", "wait", "ttl", "owner")
			require.Equal(t, name, p.name)
			_, err := lock.ValidateRequest(p.name, p.options()...)
			require.NoError(t, err, "accepted parameters must be within lock's limits")
			require.GreaterOrEqual(t, p.wait, time.Duration(0))
			require.LessOrEqual(t, p.wait, DefaultMaxWait)
			require.Equal(t, q.Get("owner"), p.owner)
			require.Equal(t, q.Has("ttl"), p.ttl > 0, "ttl given ⇔ a TTL lease")
			require.True(t, q.Has("session") || q.Has("ttl"), "a lease of neither session nor ttl was accepted")
			require.Equal(t, q.Has("session"), p.session != nil)
			if p.session != nil {
				again, err := node.ParseClientSession(p.session.String())
				require.NoError(t, err)
				require.Equal(t, *p.session, again)
				_, secret, _ := strings.Cut(q.Get("session"), ".")
				_, canonical, _ := strings.Cut(p.session.String(), ".")
				require.Equal(t, canonical, secret, "one spelling per secret")
			}
		}

		if got, key, err := leaseParams(r); err != nil {
			requireClientError(t, err)
		} else {
			q := requireWellFormed(t, rawQuery, "lease")
			require.Equal(t, name, got)
			require.NoError(t, lock.ValidateName(got))
			want, err := node.ParseLeaseKey(q.Get("lease"))
			require.NoError(t, err)
			require.Equal(t, want, key)
		}
	})
}

// requireClientError: err is one of the parsers' typed errors, and the
// API answers it with a 4xx whether or not the call had a wait.
func requireClientError(t *testing.T, err error) {
	t.Helper()
	require.True(t, errors.Is(err, errBadParam) || errors.Is(err, lock.ErrInvalidName) || errors.Is(err, lock.ErrInvalidOption),
		"untyped error %v", err)
	for _, waited := range []bool{false, true} {
		code, _ := statusOf(err, waited)
		require.True(t, code >= 400 && code < 500, "%v answers %d", err, code)
	}
}

// requireWellFormed: a query the parsers accepted parses as a whole and
// names only the endpoint's parameters, each once; else some of what the
// client sent was silently dropped or ignored.
func requireWellFormed(t *testing.T, rawQuery string, known ...string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(rawQuery)
	require.NoError(t, err, "accepted a query that does not parse: part of it was dropped")
	for k, vs := range q {
		require.True(t, slices.Contains(known, k), "accepted the unknown parameter %q", k)
		require.Len(t, vs, 1, "accepted %q given %d times", k, len(vs))
	}
	return q
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the generated seeds of testdata/fuzz/FuzzParams")

// TestFuzzParams_seeds: the checked-in seed corpus of FuzzParams is
// paramSeeds (go test ./lockhttp -run FuzzParams_seeds -update-seeds
// rewrites it). Inputs the fuzzer saved there under other names
// (crashers) are left alone.
func TestFuzzParams_seeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParams")
	for file, s := range paramSeeds() {
		path := filepath.Join(dir, file)
		want := fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\nstring(%q)\n", s.name, s.query)
		if *updateSeeds {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(path, want, 0o644))
		}
		got, err := os.ReadFile(path)
		require.NoError(t, err, "run go test ./lockhttp -run FuzzParams_seeds -update-seeds")
		assert.Equal(t, string(want), string(got), "%s is stale", path)
	}
}

// paramSeeds are valid and invalid parameters of every endpoint, by file
// name.
func paramSeeds() map[string]struct{ name, query string } {
	const session = "00000000000000ff.AAAAAAAAAAAAAAAAAAAAAA"
	const key = "AQIDBAUGBwgJCgsMDQ4PEA"
	return map[string]struct{ name, query string }{
		"acquire-none":           {"orders/42", ""},
		"acquire-session":        {"orders/42", "session=" + session},
		"acquire-all":            {"orders/42", "session=" + session + "&wait=2s&ttl=30s&owner=alice"},
		"acquire-ttl":            {"x", "ttl=30s&wait=0"},
		"acquire-escaped-owner":  {"x", "ttl=1m&owner=h%C3%B6st+1%26co"},
		"acquire-min-ttl":        {"x", "ttl=100ms"},
		"acquire-max-ttl":        {"x", "ttl=24h"},
		"acquire-ttl-over":       {"x", "ttl=24h0m0.000000001s"},
		"acquire-ttl-0":          {"x", "ttl=0"},
		"acquire-ttl-empty":      {"x", "ttl="},
		"acquire-wait-negative":  {"x", "ttl=1m&wait=-1s"},
		"acquire-wait-long":      {"x", "ttl=1m&wait=1000h"},
		"acquire-wait-overflow":  {"x", "ttl=1m&wait=9223372036854775808ns"},
		"acquire-owner-not-utf8": {"x", "ttl=1m&owner=%ff"},
		"acquire-session-bad":    {"x", "session=ff.AAAA"},
		"acquire-session-twice":  {"x", "session=" + session + "&session=" + session},
		"lease":                  {"x", "lease=" + key},
		"lease-and-token":        {"x", "lease=" + key + "&token=4"},
		"lease-token":            {"x", "token=42"},
		"lease-short":            {"x", "lease=AQID"},
		"lease-padded":           {"x", "lease=" + key + "=="},
		"name-empty":             {"", "ttl=1m"},
		"name-control":           {"a\x01b", "lease=" + key},
		"name-not-utf8":          {"\xff", ""},
		"name-multibyte":         {"é🔒", "ttl=1m&owner=h%C3%B6st"},
		"name-max":               {strings.Repeat("n", lock.MaxNameLen), "ttl=1m"},
		"name-over":              {strings.Repeat("n", lock.MaxNameLen+1), "ttl=1m"},
	}
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
		{errUnauthenticated, false, 401},
		{errForbidden, false, 403},
		{fmt.Errorf("x: %w", node.ErrSessionExpired), true, 404},
		{lock.ErrHeld, false, 409},
		{lock.ErrNotHeld, false, 409},
		{node.ErrMoved, true, 409},
		{fmt.Errorf("%w: the leader is n2", node.ErrNotLeader), false, 409},
		{fmt.Errorf("node: rejected: %w: fsm: limit reached", lock.ErrLimit), true, 429},
		{errNoSessions, false, 501},
		{node.ErrUnsupported, false, 503},
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
		{errors.New("surprise"), false, 500},
	} {
		got, _ := statusOf(tc.err, tc.waited)
		assert.Equal(t, tc.want, got, "%v (waited %v)", tc.err, tc.waited)
	}
}

func TestLogPath(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/sessions/00000000000000ff.c2VjcmV0": "/v1/sessions/00000000000000ff.…",
		"/v1/sessions/00000000000000ff":          "/v1/sessions/00000000000000ff",
		"/v1/locks/a%2Fb":                        "/v1/locks/a%2Fb",
	} {
		u, err := url.Parse(path)
		require.NoError(t, err)
		assert.Equal(t, want, logPath(&http.Request{URL: u}), path)
	}
}
