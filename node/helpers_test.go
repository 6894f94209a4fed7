package node

import (
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/lock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shared returns a newLocker for locktest: every call is a new client of
// the one node n.
func shared(n *Node) func(t *testing.T) lock.Locker {
	return func(t *testing.T) lock.Locker {
		l, err := n.NewLocker(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
}

func newNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 10 ms for up to 15 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 10*time.Millisecond)
}

// dumpGoroutines logs every goroutine's stack: a hang found in CI must
// explain itself.
func dumpGoroutines(t *testing.T) {
	t.Helper()
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	t.Logf("goroutines:\n%s", b.String())
}
