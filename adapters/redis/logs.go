package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/metrics"
)

// logEnd logs the end of a lease of holder (this Locker's ID) at the level
// its reason deserves (DESIGN.md, "Logs"): a loss, a revoke or an adoption
// at Warn, since the name may have passed on while the holder believed it
// held it; a TTL lease's expiry at Info; a release at Debug. quiet logs
// every end at Debug: the per-primary part of a Redlock lease, whose
// Redlock lease logs what matters.
func logEnd(log *slog.Logger, quiet bool, name string, token uint64, holder string, why error) {
	level, msg := slog.LevelWarn, "redis lock: lease lost"
	switch metrics.ReasonOf(why) {
	case metrics.ReasonReleased:
		level, msg = slog.LevelDebug, "redis lock: lease released"
	case metrics.ReasonExpired:
		level, msg = slog.LevelInfo, "redis lock: TTL lease expired"
	case metrics.ReasonRevoked:
		msg = "redis lock: lease revoked"
	case metrics.ReasonAdopted:
		msg = "redis lock: lease adopted by another locker"
	case metrics.ReasonLost:
	}
	if quiet {
		level = slog.LevelDebug
	}
	log.Log(context.Background(), level, msg, "name", name, "token", token, "holder", holder, "reason", why.Error())
}

// lapse logs, once per lapse, that the Locker's session lapsed: a session
// lease reached its deadline because no renewal was acknowledged in time,
// so all its session leases are lost or about to be. It is logged again
// only after a renewal round has reached the store (renewAll); c.mu held.
func (c *instance) lapse() {
	if c.lapsed {
		return
	}
	c.lapsed = true
	n := 0
	for l := range c.leases {
		if l.ttl == 0 {
			n++
		}
	}
	attrs := []any{"holder", c.id, "session_leases", n}
	if c.renewed != nil {
		attrs = append(attrs, "error", c.renewed)
	}
	c.log.Warn("redis lock: session lapsed: no renewal acknowledged in time, its session leases are lost", attrs...)
}

// RouteClientLogs routes go-redis's own log lines to l, at Debug, or drops
// them if l is nil. go-redis v9 writes through one process-wide logger
// (github.com/redis/go-redis/v9's SetLogger; it has no per-client logger),
// to stderr by default: for example every failed dial to a server that is
// down. Locker never changes it, because it is shared by every go-redis
// client of the process, including those the application made for other
// purposes: routing their lines is the application's decision, so this is
// an explicit opt-in. Call it once, at start-up; it affects every go-redis
// client in the process. The level is Debug because go-redis gives its
// lines no level and most are the connection pool's dial failures,
// repeated while a server is down, whose consequences (lost leases, the
// session lapsing) the Locker logs itself at Warn.
func RouteClientLogs(l *slog.Logger) {
	if l == nil {
		goredis.SetLogger(droppedLines{})
		return
	}
	goredis.SetLogger(slogLines{l})
}

// slogLines forwards go-redis's lines to a slog.Logger at Debug.
type slogLines struct{ log *slog.Logger }

func (s slogLines) Printf(ctx context.Context, format string, args ...any) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	line := strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
	s.log.Log(ctx, slog.LevelDebug, "go-redis: "+strings.TrimPrefix(line, "redis: "))
}

// droppedLines drops go-redis's lines.
type droppedLines struct{}

func (droppedLines) Printf(context.Context, string, ...any) {}
