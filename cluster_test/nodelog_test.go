package clustertest

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

	"github.com/quorumlock/quorumlock/node"
)

// nodeLog keeps the last Info-and-above records of a scenario's nodes, so
// that a scenario that fails (a liveness failure above all) explains
// itself: they are logged when the test fails, and never otherwise.
type nodeLog struct {
	mu    sync.Mutex
	lines []string // a ring of the last maxNodeLogLines
	next  int
	full  bool
	start time.Time
}

const maxNodeLogLines = 400

func newNodeLog(t *testing.T) *nodeLog {
	l := &nodeLog{lines: make([]string, maxNodeLogLines), start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the nodes' last %d log records (Info and above):\n%s", maxNodeLogLines, l.dump())
		}
	})
	return l
}

// edit makes node i log into l, its ID as an attribute.
func (l *nodeLog) edit(cfg *node.Config) {
	cfg.Logger = slog.New(&nodeLogHandler{log: l}).With("node", cfg.ID)
}

func (l *nodeLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines[l.next] = line
	l.next = (l.next + 1) % len(l.lines)
	l.full = l.full || l.next == 0
}

func (l *nodeLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	if l.full {
		for _, s := range l.lines[l.next:] {
			b.WriteString(s + "\n")
		}
	}
	for _, s := range l.lines[:l.next] {
		b.WriteString(s + "\n")
	}
	return b.String()
}

type nodeLogHandler struct {
	log   *nodeLog
	attrs []slog.Attr
}

func (h *nodeLogHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }

func (h *nodeLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.3fs %s %s", r.Time.Sub(h.log.start).Seconds(), r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.log.add(b.String())
	return nil
}

func (h *nodeLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &nodeLogHandler{log: h.log, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

func (h *nodeLogHandler) WithGroup(string) slog.Handler { return h }

// TestNodeLog: the ring keeps the last records in order, with the node's
// attributes.
func TestNodeLog(t *testing.T) {
	l := newNodeLog(t)
	cfg := node.Config{ID: "n7"}
	l.edit(&cfg)
	cfg.Logger.Debug("not kept")
	for i := range maxNodeLogLines + 2 {
		cfg.Logger.Warn("record", "i", i)
	}
	lines := strings.Split(strings.TrimSuffix(l.dump(), "\n"), "\n")
	require.Len(t, lines, maxNodeLogLines)
	assert.Contains(t, lines[0], "WARN record node=n7 i=2")
	assert.Contains(t, lines[len(lines)-1], fmt.Sprintf("i=%d", maxNodeLogLines+1))
}
