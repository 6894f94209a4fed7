package main

import (
	"context"
	"testing"

	"github.com/quorumlock/quorumlock/internal/httplocker"
	"github.com/stretchr/testify/require"
)

// reply is what the API answers (the fields a client reads).
type reply = httplocker.Reply

// api is an HTTP client of one lockd API.
type api struct{ httplocker.Replica }

// call sends one request and decodes the JSON reply. It reports transport
// errors instead of failing, so it is safe in polling loops.
func (a api) call(ctx context.Context, method, path string) (int, reply, error) {
	return a.Call(ctx, method, path)
}

func (a api) must(t *testing.T, method, path string, want int) reply {
	t.Helper()
	code, r, err := a.call(t.Context(), method, path)
	require.NoError(t, err)
	require.Equal(t, want, code, "%s %s: %+v", method, path, r)
	return r
}
