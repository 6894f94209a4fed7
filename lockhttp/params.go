package lockhttp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Request parameters are parsed and checked before anything reaches the
// Locker. Each parser returns values within lock's limits or an error
// that statusOf answers with 400: errBadParam, or lock's ErrInvalidName or
// ErrInvalidOption.

// errBadParam: a query that does not parse, a parameter the endpoint does
// not know or given twice, or a value that does not parse.
var errBadParam = errors.New("lockhttp: invalid parameter")

// query parses r's query string strictly. net/url's Query drops the pairs
// that do not parse and Get takes the first of repeated values, so
// "?ttl=%zz", "?ttl=1m;x" or a misspelt "?tll=1m" would grant a session
// lease to a client that asked for a TTL lease: each is errBadParam, as is
// a parameter the endpoint does not know (known) or one given twice.
func query(r *http.Request, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %w", errBadParam, err)
	}
	for k, vs := range q {
		switch {
		case !slices.Contains(known, k):
			return nil, fmt.Errorf("%w: unknown parameter %.64q", errBadParam, k)
		case len(vs) > 1:
			return nil, fmt.Errorf("%w: %q given %d times", errBadParam, k, len(vs))
		}
	}
	return q, nil
}

// duration parses parameter key of q if present: a duration in Go syntax
// ("1.5s", "300ms", "0"), not negative.
func duration(q url.Values, key string) (time.Duration, bool, error) {
	if !q.Has(key) {
		return 0, false, nil
	}
	d, err := time.ParseDuration(q.Get(key))
	if err != nil || d < 0 {
		return 0, true, fmt.Errorf("%w: %s: want a duration such as 10s or 500ms, not negative", errBadParam, key)
	}
	return d, true, nil
}

// positive parses parameter key of q if present: a positive integer.
func positive(q url.Values, key string) (uint64, bool, error) {
	if !q.Has(key) {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(q.Get(key), 10, 64)
	if err != nil || n == 0 {
		return 0, true, fmt.Errorf("%w: %s: want a positive integer", errBadParam, key)
	}
	return n, true, nil
}

// lockQuery parses a request about one lock: the {name} path segment,
// validated, and the query, strictly (known: its parameters).
func lockQuery(r *http.Request, known ...string) (string, url.Values, error) {
	q, err := query(r, known...)
	if err != nil {
		return "", nil, err
	}
	name := r.PathValue("name")
	if err := lock.ValidateName(name); err != nil {
		return "", nil, err
	}
	return name, q, nil
}

// ms is d in whole milliseconds, rounded up (0 only for 0).
func ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
