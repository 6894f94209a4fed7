package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// FuzzParams feeds an arbitrary lock name (the {name} path value, as the
// mux unescaped it) and raw query string to every parameter parser. The
// parsers never panic, and each either returns the values the query says,
// within lock's limits, or an error statusOf answers with a 4xx.
// Requests have no body the API reads. Seeds: testdata/fuzz/FuzzParams,
// written by TestFuzzParams_seeds.
func FuzzParams(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, rawQuery string) {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/v1/locks/x", RawQuery: rawQuery}}
		r.SetPathValue("name", name)

		if p, err := parseAcquire(r); err != nil {
			requireClientError(t, err)
		} else {
			q := requireWellFormed(t, rawQuery, "wait", "ttl", "owner")
			require.Equal(t, name, p.name)
			_, err := lock.ValidateRequest(p.name, p.options()...)
			require.NoError(t, err, "accepted parameters must be within lock's limits")
			require.GreaterOrEqual(t, p.wait, time.Duration(0))
			require.Equal(t, q.Get("owner"), p.owner)
			require.Equal(t, q.Has("ttl"), p.ttl > 0, "ttl given ⇔ a TTL lease")
			for k, got := range map[string]time.Duration{"wait": p.wait, "ttl": p.ttl} {
				if !q.Has(k) {
					require.Zero(t, got, k)
					continue
				}
				want, err := time.ParseDuration(q.Get(k))
				require.NoError(t, err, k)
				require.Equal(t, want, got, k)
			}
		}

		if key, err := parseLease(r); err != nil {
			requireClientError(t, err)
		} else {
			q := requireWellFormed(t, rawQuery, "token")
			require.Equal(t, name, key.name)
			require.NoError(t, lock.ValidateName(key.name))
			require.NotZero(t, key.token)
			// Decimal digits only; leading zeros do not change the number.
			require.Equal(t, strings.TrimLeft(q.Get("token"), "0"), strconv.FormatUint(key.token, 10))
		}

		if got, err := parseName(r); err != nil {
			requireClientError(t, err)
		} else {
			requireWellFormed(t, rawQuery)
			require.Equal(t, name, got)
			require.NoError(t, lock.ValidateName(got))
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
// paramSeeds (go test ./examples/lockd -run FuzzParams_seeds -update-seeds
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
		require.NoError(t, err, "run go test ./examples/lockd -run FuzzParams_seeds -update-seeds")
		assert.Equal(t, string(want), string(got), "%s is stale", path)
	}
}

// paramSeeds are valid and invalid parameters of every endpoint, by file
// name.
func paramSeeds() map[string]struct{ name, query string } {
	return map[string]struct{ name, query string }{
		"acquire":                {"orders/42", ""},
		"acquire-all":            {"orders/42", "wait=2s&ttl=30s&owner=alice"},
		"acquire-escaped-owner":  {"x", "owner=h%C3%B6st+1%26co"},
		"acquire-wait-0":         {"x", "wait=0"},
		"acquire-min-ttl":        {"x", "ttl=100ms"},
		"acquire-max-ttl":        {"x", "ttl=24h"},
		"acquire-ttl-over":       {"x", "ttl=24h0m0.000000001s"},
		"acquire-ttl-0":          {"x", "ttl=0"},
		"acquire-ttl-empty":      {"x", "ttl="},
		"acquire-wait-negative":  {"x", "wait=-1s"},
		"acquire-wait-words":     {"x", "wait=soon"},
		"acquire-wait-overflow":  {"x", "wait=9223372036854775808ns"},
		"acquire-owner-not-utf8": {"x", "owner=%ff"},
		"lease":                  {"x", "token=42"},
		"lease-token-0":          {"x", "token=0"},
		"lease-token-negative":   {"x", "token=-1"},
		"lease-token-overflow":   {"x", "token=18446744073709551616"},
		"lease-token-plus":       {"x", "token=+1"},
		"name-empty":             {"", ""},
		"name-control":           {"a\x01b", ""},
		"name-not-utf8":          {"\xff", ""},
		"name-multibyte":         {"é🔒", "owner=h%C3%B6st"},
		"name-max":               {strings.Repeat("n", lock.MaxNameLen), ""},
		"name-over":              {strings.Repeat("n", lock.MaxNameLen+1), ""},
	}
}
