package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// redisErr is a reply error of the server, as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

var _ goredis.Error = redisErr("")

// TestRetryable (item 16): only an unreachable store or a transient state
// is worth asking again; a reply this version does not understand, the
// server's refusals and unclassified errors are not, so that no call spins
// on them until its ctx ends.
func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{context.DeadlineExceeded, true},
		{errNoAnswer, true},
		{redisErr("LOADING Redis is loading the dataset in memory"), true},
		{redisErr("ERR max number of clients reached"), true},
		{fmt.Errorf("%w: acquire answered [what]", ErrUnexpectedReply), false},
		{redisErr("OOM command not allowed when used memory > 'maxmemory'."), false},
		{redisErr("NOAUTH Authentication required."), false},
		{redisErr("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{goredis.ErrClosed, false},
		{errors.New("redis: can't parse reply"), false},
	} {
		assert.Equal(t, c.want, retryable(c.err), "%v", c.err)
	}
}
