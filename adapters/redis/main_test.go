package redis_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// quietLogger drops go-redis's own log lines: the fault tests make it log
// every failed dial to a killed server, which buries real failures.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	goredis.SetLogger(quietLogger{})
	// After PoolSize failed dials a go-redis pool starts a prober that
	// sleeps 1 s between dials and notices its pool's Close only after the
	// sleep: it outlives Close by up to a second (go-redis, not ours).
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
