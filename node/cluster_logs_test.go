package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// logRecorder is a slog.Handler that keeps every record at Debug and
// above, with the attributes given to With: the counting handler of the
// log tests.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]loggedLine
	attrs   []slog.Attr
}

type loggedLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l loggedLine) String() string {
	return fmt.Sprintf("%v %q %v", l.level, l.msg, l.attrs)
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), records: new([]loggedLine)}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	line := loggedLine{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		line.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		if _, dup := line.attrs[a.Key]; dup {
			line.attrs["DUPLICATE "+a.Key] = a.Value.String()
		}
		line.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.records = append(*r.records, line)
	return nil
}

func (r *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorder{mu: r.mu, records: r.records, attrs: append(append([]slog.Attr{}, r.attrs...), attrs...)}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// lines returns the records at level or above.
func (r *logRecorder) lines(level slog.Level) []loggedLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []loggedLine
	for _, l := range *r.records {
		if l.level >= level {
			out = append(out, l)
		}
	}
	return out
}

// startLoggedCluster starts a 3-node cluster whose nodes all log into rec,
// each through Logger.With("node", id), as the Config documents.
func startLoggedCluster(t *testing.T, rec *logRecorder) *testcluster.Cluster {
	return testcluster.Start(t, testcluster.Options{Size: 3, Edit: func(i int, cfg *node.Config) {
		cfg.Logger = slog.New(rec).With("node", cfg.ID)
	}})
}

// TestCluster_LogsLeaderKill (issue 13): a leader crash makes Raft report
// the dead peer, not flood the log with ERROR lines: no ERROR at all, and
// each survivor's complaint about the dead peer at Warn once per message
// (a reminder comes only after 30 s of it), and no attribute twice.
func TestCluster_LogsLeaderKill(t *testing.T) {
	rec := newLogRecorder()
	c := startLoggedCluster(t, rec)
	ctx := clusterCtx(t)
	old := c.Leader()
	start := time.Now()
	c.Kill(old)
	leader := c.Leader()
	require.NotEqual(t, old, leader)
	l, err := c.NewLocker(ctx, leader)
	require.NoError(t, err)
	lease, err := l.Acquire(ctx, "after-the-kill")
	require.NoError(t, err, "Acquire on the new leader")
	require.NoError(t, lease.Release(ctx))
	elapsed := time.Since(start)

	assert.Empty(t, rec.lines(slog.LevelError), "no ERROR lines after a leader crash")
	newLeader := c.ID(leader)
	var told []string
	for _, l := range rec.lines(slog.LevelInfo) {
		if l.msg == "leader changed" && l.attrs["leader"] == newLeader {
			told = append(told, l.attrs["node"])
		}
	}
	assert.Subset(t, told, []string{newLeader}, "the new leader logs the change at Info")
	reminders := int(elapsed/(30*time.Second)) + 1
	perPeer := map[string]int{}
	for _, l := range rec.lines(slog.LevelWarn) {
		if l.attrs["component"] == "raft" {
			perPeer[l.attrs["node"]+" "+l.msg]++
		}
	}
	for what, n := range perPeer {
		assert.LessOrEqualf(t, n, reminders, "Warn lines %q in %v", what, elapsed)
	}
	for _, l := range rec.lines(slog.LevelDebug) {
		for k := range l.attrs {
			assert.Falsef(t, strings.HasPrefix(k, "DUPLICATE "), "attribute given twice: %v", l)
		}
	}
}

// TestCluster_LogsGracefulStop (issue 13): stopping a healthy cluster one
// node after the other logs no ERROR line.
func TestCluster_LogsGracefulStop(t *testing.T) {
	rec := newLogRecorder()
	c := startLoggedCluster(t, rec)
	ctx := clusterCtx(t)
	l, err := c.NewLocker(ctx, 1)
	require.NoError(t, err)
	lease, err := l.Acquire(ctx, "before-the-stop")
	require.NoError(t, err)
	require.NoError(t, lease.Release(ctx))
	for _, i := range []int{c.Leader(), 0, 1, 2} {
		if c.Node(i) != nil {
			c.Close(i)
		}
	}
	assert.Empty(t, rec.lines(slog.LevelError), "no ERROR lines while a healthy cluster stops")
}

// TestCluster_LogsLostLease (issue 13): what an operator must know is
// logged at Warn: the holder's node says its lease is lost (here: its node
// crashed), and the leader says it expired the silent session, naming it
// as Inspect does.
func TestCluster_LogsLostLease(t *testing.T) {
	rec := newLogRecorder()
	c := startLoggedCluster(t, rec)
	ctx := clusterCtx(t)
	f := c.Follower()
	l, err := c.NewLocker(ctx, f)
	require.NoError(t, err)
	lease, err := l.Acquire(ctx, "lost-job")
	require.NoError(t, err)
	info, err := c.Node(c.Leader()).Inspect(ctx, "lost-job")
	require.NoError(t, err)
	c.Kill(f)
	require.ErrorIs(t, lease.Err(), lock.ErrLost)

	warned := func(msg, key, want string) func() bool {
		return func() bool {
			for _, line := range rec.lines(slog.LevelWarn) {
				if line.msg == msg && line.attrs[key] == want {
					return true
				}
			}
			return false
		}
	}
	assert.True(t, warned("lease lost", "name", "lost-job")(), "the holder's node logs the lost lease at Warn")
	require.Eventually(t, warned("session expired: no keep-alive for its TTL; its session leases pass on", "session", info.Holder),
		20*time.Second, 5*time.Millisecond, "the leader logs the expired session at Warn, named as Inspect names its holder")
}
