package node

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter forwards hashicorp/raft's hclog output to a *slog.Logger.
// Raft's Info is verbose for a library; it is mapped to slog Debug so that
// an application logging at Info sees only raft's warnings and errors, and
// those pass through chatter (raftlog.go), which demotes and rate-limits
// the routine ones.
type hclogAdapter struct {
	l    *slog.Logger
	ch   *chatter // shared by every adapter derived from one
	name string
	args []any
}

func newHCLog(l *slog.Logger, ch *chatter) hclog.Logger {
	return &hclogAdapter{l: l, ch: ch, name: "raft"}
}

func (h *hclogAdapter) level(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace, hclog.Debug, hclog.Info, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hclogAdapter) Log(lv hclog.Level, msg string, args ...any) {
	sl, extra := h.ch.level(h.level(lv), msg, args)
	if !h.l.Enabled(context.Background(), sl) {
		return
	}
	// Raft's own attributes go in a group, so that none of them (Raft logs
	// a "node", for one) duplicates one the caller's logger carries.
	raftArgs := append([]any{}, h.args...)
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		if k == "" {
			k = "arg"
		}
		raftArgs = append(raftArgs, k, args[i+1])
	}
	all := append([]any{"component", h.name}, extra...)
	if len(raftArgs) > 0 {
		all = append(all, slog.Group("raft", raftArgs...))
	}
	h.l.Log(context.Background(), sl, msg, all...)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(lv hclog.Level) bool {
	return h.l.Enabled(context.Background(), h.level(lv))
}
func (h *hclogAdapter) IsTrace() bool        { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool        { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool         { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool         { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool        { return h.enabled(hclog.Error) }
func (h *hclogAdapter) ImpliedArgs() []any   { return h.args }
func (h *hclogAdapter) Name() string         { return h.name }
func (h *hclogAdapter) SetLevel(hclog.Level) {}
func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: h.l, ch: h.ch, name: h.name, args: append(append([]any{}, h.args...), args...)}
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, ch: h.ch, name: h.name + "." + name, args: h.args}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, ch: h.ch, name: name, args: h.args}
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Log(hclog.Info, string(p))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
