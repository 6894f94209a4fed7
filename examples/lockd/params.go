package main

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

// The request parameters of the lock endpoints, parsed and checked before
// anything reaches the locker. Each parser returns values within lock's
// limits or an error that statusOf answers with 400: errBadParam, or
// lock's ErrInvalidName or ErrInvalidOption.

// errBadParam: a query that does not parse, a parameter the endpoint does
// not know or given twice, or a value that does not parse.
var errBadParam = errors.New("lockd: invalid parameter")

// acquireParams are the parameters of POST /v1/locks/{name}.
type acquireParams struct {
	name  string
	wait  time.Duration // 0: one try
	ttl   time.Duration // 0: a session lease
	owner string
}

// options are p's lock options.
func (p acquireParams) options() []lock.Option {
	var opts []lock.Option
	if p.ttl > 0 {
		opts = append(opts, lock.WithTTL(p.ttl))
	}
	if p.owner != "" {
		opts = append(opts, lock.WithOwner(p.owner))
	}
	return opts
}

// parseAcquire parses POST /v1/locks/{name}?wait=DUR&ttl=DUR&owner=STR.
func parseAcquire(r *http.Request) (acquireParams, error) {
	q, err := query(r, "wait", "ttl", "owner")
	if err != nil {
		return acquireParams{}, err
	}
	p := acquireParams{name: r.PathValue("name"), owner: q.Get("owner")}
	if q.Has("wait") {
		if p.wait, err = parseDuration(q.Get("wait")); err != nil {
			return acquireParams{}, fmt.Errorf("%w: wait: %w", errBadParam, err)
		}
	}
	opts := []lock.Option{lock.WithOwner(p.owner)}
	if q.Has("ttl") {
		if p.ttl, err = parseDuration(q.Get("ttl")); err != nil {
			return acquireParams{}, fmt.Errorf("%w: ttl: %w", errBadParam, err)
		}
		opts = append(opts, lock.WithTTL(p.ttl)) // ttl=0 is out of range, not a session lease
	}
	if _, err := lock.ValidateRequest(p.name, opts...); err != nil {
		return acquireParams{}, err
	}
	return p, nil
}

// parseLease parses the lease a refresh or release names:
// /v1/locks/{name}?token=N.
func parseLease(r *http.Request) (leaseKey, error) {
	q, err := query(r, "token")
	if err != nil {
		return leaseKey{}, err
	}
	name, err := validName(r)
	if err != nil {
		return leaseKey{}, err
	}
	token, err := strconv.ParseUint(q.Get("token"), 10, 64)
	if err != nil || token == 0 {
		return leaseKey{}, fmt.Errorf("%w: token: want a positive integer", errBadParam)
	}
	return leaseKey{name, token}, nil
}

// parseName parses GET /v1/locks/{name}, which takes no parameters.
func parseName(r *http.Request) (string, error) {
	if _, err := query(r); err != nil {
		return "", err
	}
	return validName(r)
}

func validName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := lock.ValidateName(name); err != nil {
		return "", err
	}
	return name, nil
}

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

// parseDuration parses a duration in Go syntax ("1.5s", "300ms", "0");
// negative durations are invalid.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}
