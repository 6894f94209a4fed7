package zookeeper

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"

	"github.com/quorumlock/quorumlock/metrics"
)

// Defaults of Config.
const (
	DefaultRoot           = "/quorumlock"
	DefaultSessionTimeout = 10 * time.Second
)

// Errors of this package. The lock.Err* errors of lock are returned as
// well, wrapped; test with errors.Is.
var (
	// ErrInvalidConfig: New was given a Config it cannot use; the message
	// names the field.
	ErrInvalidConfig = errors.New("zookeeper: invalid config")
	// ErrTTLUnsupported: the server refused to create a TTL node. Start it
	// with -Dzookeeper.extendedTypesEnabled=true to use WithTTL.
	ErrTTLUnsupported = errors.New("zookeeper: server has no TTL nodes (start it with -Dzookeeper.extendedTypesEnabled=true)")
)

// Config configures a Locker. Set exactly one of Servers and Conn.
type Config struct {
	// Servers are the host:port addresses of the ensemble. The Locker makes
	// its own connection (one session) and closes it on Close.
	Servers []string

	// Conn is an existing connection to use instead of Servers. The Locker
	// shares its session and does not close it. No event channel is needed:
	// the Locker probes the session itself (see DESIGN.md), but
	// SessionTimeout must then say what session timeout the Conn was
	// created with (or the server's maxSessionTimeout if that is lower).
	Conn *zk.Conn

	// Root is the absolute path under which lock directories are created.
	// Default DefaultRoot. It is created (as persistent nodes) if missing.
	Root string

	// SessionTimeout is the session timeout requested from the server
	// (default DefaultSessionTimeout) or, with Conn, the one the Conn's
	// session has (required). With its own connection the Locker uses the
	// smaller of this and the timeout the server negotiated.
	SessionTimeout time.Duration

	// SessionMargin is subtracted from the session timeout to get the
	// deadline after which a Locker that could not confirm its session
	// treats its session leases as lost. Default: half the session timeout,
	// which also covers an ensemble's session-touch propagation when the
	// timeout is only two ticks; must be less than SessionTimeout.
	SessionMargin time.Duration

	// ACL of the nodes the Locker creates. Default zk.WorldACL(zk.PermAll).
	ACL []zk.ACL

	// Node names the replica or host this Locker runs on, as Inspect and
	// List report it (lock.Info.Node). Default: os.Hostname(), or "" if
	// that fails (or does not fit). At most 255 bytes of UTF-8 without control characters.
	Node string

	// Logger receives the Locker's logs (a revoked or adopted lease at
	// Warn, the rest at Debug) and go-zookeeper's. Default: discard.
	Logger *slog.Logger

	// Metrics receives this Locker's measurements (metrics/DESIGN.md):
	// Acquire calls, grants, lease ends, waiting Acquire calls, leases
	// held and the Locker's session. nil: none. Give each Locker its own.
	Metrics metrics.Sink
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	switch {
	case len(c.Servers) == 0 && c.Conn == nil:
		return fmt.Errorf("%w: Servers or Conn must be set", ErrInvalidConfig)
	case len(c.Servers) > 0 && c.Conn != nil:
		return fmt.Errorf("%w: Servers and Conn are both set", ErrInvalidConfig)
	case c.SessionTimeout < 0:
		return fmt.Errorf("%w: SessionTimeout %v is negative", ErrInvalidConfig, c.SessionTimeout)
	case c.Conn != nil && c.SessionTimeout == 0:
		return fmt.Errorf("%w: SessionTimeout is required with Conn (the session timeout the Conn was created with)", ErrInvalidConfig)
	}
	for i, s := range c.Servers {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("%w: Servers[%d] is empty", ErrInvalidConfig, i)
		}
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.SessionTimeout < time.Millisecond {
		return fmt.Errorf("%w: SessionTimeout %v is below 1ms", ErrInvalidConfig, c.SessionTimeout)
	}
	if c.SessionMargin < 0 || c.SessionMargin >= c.SessionTimeout {
		return fmt.Errorf("%w: SessionMargin %v outside [0, SessionTimeout %v)", ErrInvalidConfig, c.SessionMargin, c.SessionTimeout)
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if err := validateRoot(c.Root); err != nil {
		return fmt.Errorf("%w: Root %q: %w", ErrInvalidConfig, c.Root, err)
	}
	if c.Node == "" {
		if h, err := os.Hostname(); err == nil && validateNode(h) == nil {
			c.Node = h
		}
	}
	if err := validateNode(c.Node); err != nil {
		return fmt.Errorf("%w: Node: %w", ErrInvalidConfig, err)
	}
	if c.ACL == nil {
		c.ACL = zk.WorldACL(zk.PermAll)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// validateNode accepts what fits the node data's node field as text.
func validateNode(node string) error {
	switch {
	case len(node) > maxNodeLen:
		return fmt.Errorf("%d bytes, at most %d", len(node), maxNodeLen)
	case !utf8.ValidString(node):
		return errors.New("not valid UTF-8")
	}
	for _, r := range node {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

// validateRoot accepts an absolute path of escaped-safe components.
func validateRoot(root string) error {
	if !strings.HasPrefix(root, "/") || root == "/" || strings.HasSuffix(root, "/") {
		return errors.New("must be an absolute path other than / without a trailing slash")
	}
	for _, part := range strings.Split(root[1:], "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("bad component %q", part)
		}
		for _, r := range part {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0xd800 && r <= 0xf8ff) || r >= 0xfff0 && r <= 0xffff {
				return fmt.Errorf("component %q has a character ZooKeeper rejects", part)
			}
		}
	}
	if root == "/zookeeper" || strings.HasPrefix(root, "/zookeeper/") {
		return errors.New("/zookeeper is reserved by the server")
	}
	return nil
}
