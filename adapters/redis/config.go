package redis

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/metrics"
)

// Defaults and limits of Config.
const (
	// DefaultPrefix starts every key and channel name the adapter uses.
	DefaultPrefix = "quorumlock:"
	// DefaultSessionTTL is the server-side TTL of session leases and of
	// waiters' heartbeats.
	DefaultSessionTTL = 10 * time.Second
	// MinSessionTTL and MaxSessionTTL bound Config.SessionTTL (the limits of
	// lock.WithTTL).
	MinSessionTTL = lock.MinTTL
	MaxSessionTTL = lock.MaxTTL
	// MaxPrefixLen bounds Config.Prefix.
	MaxPrefixLen = 256
	// MinRedlockAddrs is the least number of primaries of the Redlock mode.
	MinRedlockAddrs = 3
	// MaxNodeLen bounds Config.Node.
	MaxNodeLen = 256
)

// Config configures New. The zero value of every field but Addr, Client
// and Addrs is a documented default.
type Config struct {
	// Addr is the "host:port" of a Redis primary; New creates a go-redis
	// client for it, and Close closes that client.
	Addr string

	// Addrs, with at least MinRedlockAddrs entries, selects the Redlock
	// mode: a lease is granted when a majority of these independent
	// primaries grant it (see DESIGN.md for what that does and does not
	// promise). Exactly one of Addr, Client and Addrs must be set.
	Addrs []string

	// Client is an existing go-redis client (a *redis.Client, including one
	// from NewFailoverClient). The caller keeps ownership: Close does not
	// close it. Cluster clients and rings are rejected (see DESIGN.md). Set
	// its ContextTimeoutEnabled so that ctx deadlines bound socket reads.
	Client goredis.UniversalClient

	// Prefix starts every key and pub/sub channel of this adapter. Default
	// DefaultPrefix. Lockers that should see each other's locks must use the
	// same prefix. At most MaxPrefixLen bytes of valid UTF-8.
	Prefix string

	// SessionTTL is how long a session lease (and a waiter's place in a
	// queue) survives in Redis without renewal. Renewals are sent every
	// SessionTTL/3; the holder's Done closes at the send time of the last
	// acknowledged renewal + SessionTTL − SessionTTL/50 − 2 ms. Default
	// DefaultSessionTTL; between MinSessionTTL and MaxSessionTTL.
	SessionTTL time.Duration

	// SkipEvictionCheck turns off the check of the server's
	// maxmemory-policy. By default the first call on a primary reads it (INFO
	// memory, else CONFIG GET) and calls fail with ErrEvictionPolicy unless
	// it is noeviction, or if it cannot be read. Risk when set: with any
	// other policy Redis may, under memory pressure, evict a live lease
	// (volatile-* and allkeys-*) or the fence counter and epoch key
	// (allkeys-*): another client is then granted the name while the
	// holder's Done stays open until its next renewal, and tokens may
	// repeat. Set it only on a server you know runs noeviction but forbids
	// both INFO and CONFIG GET.
	SkipEvictionCheck bool

	// Node names this process in Inspect and List (lock.Info.Node and
	// lock.Waiter.Node of its leases and waiters). Default: os.Hostname(),
	// "" if that fails. At most MaxNodeLen bytes of valid UTF-8 without
	// control characters.
	Node string

	// Logger receives the adapter's records: at Warn what an operator must
	// know (a lease lost, revoked or adopted away, with name, token, holder
	// and reason; the Locker's session lapsing; a store reset), at Info a
	// TTL lease that ran out, at Debug the routine (failed renewals and
	// attempts). Default: discard. go-redis's own lines do not come here
	// unless the application calls RouteClientLogs.
	Logger *slog.Logger

	// Metrics receives this Locker's measurements (metrics/DESIGN.md; the
	// Prometheus implementation is metrics/prommetrics). A Locker counts as
	// one session. Give each Locker its own Sink. Default nil: none.
	Metrics metrics.Sink
}

// withDefaults validates c and fills in defaults. The error wraps
// ErrInvalidConfig and names the field.
func (c Config) withDefaults() (Config, error) {
	set := 0
	for _, ok := range []bool{c.Addr != "", c.Client != nil, c.Addrs != nil} {
		if ok {
			set++
		}
	}
	switch {
	case set == 0:
		return c, fmt.Errorf("%w: Addr, Client or Addrs is required", ErrInvalidConfig)
	case set > 1:
		return c, fmt.Errorf("%w: set only one of Addr, Client and Addrs", ErrInvalidConfig)
	case c.Addr != "" && !isHostPort(c.Addr):
		return c, fmt.Errorf("%w: Addr %q is not host:port", ErrInvalidConfig, c.Addr)
	case c.Addrs != nil && len(c.Addrs) < MinRedlockAddrs:
		return c, fmt.Errorf("%w: Addrs has %d entries; Redlock needs at least %d", ErrInvalidConfig, len(c.Addrs), MinRedlockAddrs)
	}
	seen := make(map[string]bool, len(c.Addrs))
	for i, a := range c.Addrs {
		if !isHostPort(a) {
			return c, fmt.Errorf("%w: Addrs[%d] %q is not host:port", ErrInvalidConfig, i, a)
		}
		if seen[a] {
			return c, fmt.Errorf("%w: Addrs[%d] %q appears twice", ErrInvalidConfig, i, a)
		}
		seen[a] = true
	}
	switch c.Client.(type) {
	case *goredis.ClusterClient:
		return c, fmt.Errorf("%w: Client: Redis Cluster is not supported", ErrInvalidConfig)
	case *goredis.Ring:
		return c, fmt.Errorf("%w: Client: a Ring is not supported", ErrInvalidConfig)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if len(c.Prefix) > MaxPrefixLen || !utf8.ValidString(c.Prefix) {
		return c, fmt.Errorf("%w: Prefix must be at most %d bytes of valid UTF-8", ErrInvalidConfig, MaxPrefixLen)
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL {
		return c, fmt.Errorf("%w: SessionTTL %v outside [%v, %v]", ErrInvalidConfig, c.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	if c.Node == "" {
		if host, err := os.Hostname(); err == nil && validNode(host) {
			c.Node = host
		}
	}
	if !validNode(c.Node) {
		return c, fmt.Errorf("%w: Node must be at most %d bytes of valid UTF-8 without control characters", ErrInvalidConfig, MaxNodeLen)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validNode reports whether s can be a Config.Node: the scripts separate
// it from the owner by a newline (see DESIGN.md, "Operating a lock").
func validNode(s string) bool {
	return len(s) <= MaxNodeLen && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

func isHostPort(a string) bool {
	return strings.TrimSpace(a) == a && strings.Contains(a, ":")
}

// driftMargin is how much earlier than the store a holder considers its
// lease over: clocks run at slightly different rates and timers fire late.
func driftMargin(ttl time.Duration) time.Duration { return ttl/50 + 2*time.Millisecond }

// leaseTTL is the TTL of a lease in Redis: lock.WithTTL's for a TTL lease,
// SessionTTL for a session lease.
func (c Config) leaseTTL(o lock.Options) time.Duration {
	if o.TTL > 0 {
		return o.TTL
	}
	return c.SessionTTL
}
