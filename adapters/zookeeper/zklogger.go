package zookeeper

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// zkLogger forwards go-zookeeper's log lines to the Locker's logger at debug
// level and learns the negotiated session timeout from the line it writes
// after each handshake ("authenticated: id=%d, timeout=%d").
type zkLogger struct {
	log        *slog.Logger
	negotiated *atomic.Int64
}

func (z zkLogger) Printf(format string, args ...any) {
	if strings.HasPrefix(format, "authenticated: id=%d, timeout=%d") && len(args) == 2 {
		if ms, ok := args[1].(int32); ok && ms > 0 {
			z.negotiated.Store(int64(time.Duration(ms) * time.Millisecond))
		}
	}
	if z.log.Enabled(context.Background(), slog.LevelDebug) {
		z.log.Debug(fmt.Sprintf(format, args...), "component", "go-zookeeper")
	}
}
