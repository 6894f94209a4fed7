package redis_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/lock"
)

// newLocker returns a Locker on addr with a short session TTL, closed when
// the test ends.
func newLocker(t *testing.T, addr string, sessionTTL time.Duration) *redis.Locker {
	t.Helper()
	l, err := redis.New(redis.Config{Addr: addr, SessionTTL: sessionTTL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitDone waits for a lease to end and returns when it was seen ending.
func waitDone(t *testing.T, lease lock.Lease, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-lease.Done():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: lease still held after %v", what, within)
	}
	panic("unreachable")
}

// acquireN takes and releases name n times, to move its fence counter on,
// and returns the last token.
func acquireN(t *testing.T, l lock.Locker, name string, n int) uint64 {
	t.Helper()
	var last uint64
	for range n {
		lease, err := l.Acquire(testCtx(t), name)
		require.NoError(t, err)
		last = lease.Token()
		require.NoError(t, lease.Release(testCtx(t)))
	}
	return last
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitWaiters polls Inspect until name has n waiters.
func waitWaiters(t *testing.T, l lock.Locker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := l.Inspect(testCtx(t), name)
		require.NoError(t, err)
		if info.Waiters == n {
			return
		}
		require.Falsef(t, time.Now().After(deadline), "Inspect(%q).Waiters = %d, want %d", name, info.Waiters, n)
		<-time.After(5 * time.Millisecond)
	}
}

// requireEndedCtxAlone (R5): with the store reachable, every call of l whose
// ctx had ended before it began answers ctx's error alone, not
// ErrNoQuorum. It returns the lease on name it holds for Refresh and
// Release; the caller releases it.
func requireEndedCtxAlone(t *testing.T, l lock.Locker, name, where string) lock.Lease {
	t.Helper()
	ctx := testCtx(t)
	held, err := l.Acquire(ctx, name)
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	for _, call := range []struct {
		what string
		do   func() error
	}{
		{"Acquire", func() error { _, err := l.Acquire(ended, name+"-free"); return err }},
		{"TryAcquire", func() error { _, err := l.TryAcquire(ended, name+"-free"); return err }},
		{"Inspect", func() error { _, err := l.Inspect(ended, name); return err }},
		{"Refresh", func() error { return held.Refresh(ended) }},
		{"Release", func() error { return held.Release(ended) }},
	} {
		err := call.do()
		assert.ErrorIs(t, err, context.Canceled, call.what)
		assert.NotErrorIs(t, err, lock.ErrNoQuorum, call.what+" with an ended ctx, "+where)
	}
	return held
}

// newNodeLocker returns a Locker on addr with Config.Node set to node,
// its records going to logs, closed when the test ends.
func newNodeLocker(t *testing.T, addr, node string, sessionTTL time.Duration, logs *records) *redis.Locker {
	t.Helper()
	cfg := redis.Config{Addr: addr, SessionTTL: sessionTTL, Node: node}
	if logs != nil {
		cfg.Logger = slog.New(logs)
	}
	l, err := redis.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// rawClient is a plain go-redis client on addr, for looking at keys.
func rawClient(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keysOf returns the adapter's keys that belong to name (default prefix),
// without the prefix: "fence:name", "lease:name", ...
func keysOf(t *testing.T, raw *goredis.Client, name string) []string {
	t.Helper()
	var out []string
	for _, kind := range []string{"lease", "fence", "queue", "beats", "qseq", "claims", "held"} {
		key := redis.DefaultPrefix + kind + ":" + name
		n, err := raw.Exists(testCtx(t), key).Result()
		require.NoError(t, err)
		if n > 0 {
			out = append(out, kind+":"+name)
		}
	}
	return out
}

// holderOf returns Info.Holder of name, which must be held.
func holderOf(t *testing.T, l lock.Locker, name string) string {
	t.Helper()
	info, err := l.Inspect(testCtx(t), name)
	require.NoError(t, err)
	require.True(t, info.Held, "%q must be held", name)
	require.NotEmpty(t, info.Holder, "Holder of a held name")
	return info.Holder
}

// records is a slog.Handler that keeps every record, for tests of what the
// adapter logs.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec.Clone())
	return nil
}
func (r *records) WithAttrs(as []slog.Attr) slog.Handler { return withAttrs{r, as} }
func (r *records) WithGroup(string) slog.Handler         { return r }

// withAttrs is records with attributes added by Logger.With.
type withAttrs struct {
	r     *records
	attrs []slog.Attr
}

func (w withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w withAttrs) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(w.attrs...)
	return w.r.Handle(ctx, rec)
}
func (w withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return withAttrs{w.r, append(append([]slog.Attr(nil), w.attrs...), as...)}
}
func (w withAttrs) WithGroup(string) slog.Handler { return w }

// find returns the attributes of the first record at level whose message
// contains msg, and whether there is one.
func (r *records) find(level slog.Level, msg string) (map[string]any, bool) {
	all := r.all(level, msg)
	if len(all) == 0 {
		return nil, false
	}
	return all[0], true
}

// all returns the attributes of every record at level whose message
// contains msg, in order.
func (r *records) all(level slog.Level, msg string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, rec := range r.list {
		if rec.Level != level || !strings.Contains(rec.Message, msg) {
			continue
		}
		attrs := map[string]any{}
		rec.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Any()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// messagesAt returns the messages of the records at level, in order.
func (r *records) messagesAt(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.list {
		if rec.Level == level {
			out = append(out, rec.Message)
		}
	}
	return out
}

// messages returns every record as "LEVEL message", in order.
func (r *records) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.list))
	for i, rec := range r.list {
		out[i] = rec.Level.String() + " " + rec.Message
	}
	return out
}

// stateOf is the part of an Info that the tests written before issue 13
// compare as a whole.
func stateOf(info lock.Info) lock.Info {
	return lock.Info{Name: info.Name, Held: info.Held, Token: info.Token, Owner: info.Owner, Waiters: info.Waiters, ExpiresIn: info.ExpiresIn}
}
