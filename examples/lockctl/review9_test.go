package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// "." and ".." are valid lock names (a client takes them with
// POST /v1/locks/%2E%2E), and an admin must be able to inspect and revoke
// them. lockctl escapes names with url.PathEscape, which leaves dots
// alone: "/v1/locks/../revoke" is a dot segment that the server's mux
// cleans away (a redirect to another path), so lockctl answers a 4xx.
func TestReview9_DotNamesCanBeInspectedAndRevoked(t *testing.T) {
	s := start(t)
	n := s.c.Node(s.at)
	for _, name := range []string{".", ".."} {
		g, err := n.AcquireKeyed(context.Background(), name, lock.WithTTL(time.Hour))
		require.NoError(t, err, name)
		token := strconv.FormatUint(g.Token, 10)

		code, out, errs := s.ctl(t, s.client, "inspect", name)
		assert.Equal(t, exitOK, code, "inspect %q: %s", name, errs)
		assert.Contains(t, out, token, "inspect %q shows its holder", name)

		code, _, errs = s.ctl(t, s.admin, "revoke", name, token)
		assert.Equal(t, exitOK, code, "revoke %q: %s", name, errs)
		info, err := n.Inspect(context.Background(), name)
		require.NoError(t, err)
		assert.False(t, info.Held, "%q revoked", name)
	}
}
