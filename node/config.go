package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults and limits of Config.
const (
	DefaultID         = "local"
	DefaultSessionTTL = 10 * time.Second
	MinSessionTTL     = 500 * time.Millisecond
	MaxSessionTTL     = time.Hour
)

// Config configures a Node. The zero Config is the embedded default: one
// in-memory node that is the leader at once and keeps nothing on disk.
type Config struct {
	// ID names this node in the Raft configuration. Default DefaultID.
	ID string

	// DataDir, when set, makes the node durable: the Raft log and stable
	// store (raft-boltdb) and snapshots live there, and a node restarted on
	// the same DataDir keeps every lease, queue and token counter. Empty
	// means in memory.
	DataDir string

	// SessionTTL is how long a Locker's session survives without a
	// keep-alive: the time until a crashed holder's session leases pass to
	// the next waiter. Default DefaultSessionTTL; between MinSessionTTL and
	// MaxSessionTTL.
	SessionTTL time.Duration

	// Logger receives the node's and Raft's logs. Nil means silent.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by New's errors about Config fields.
var ErrInvalidConfig = errors.New("node: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		c.ID = DefaultID
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL {
		return c, fmt.Errorf("%w: SessionTTL %v outside [%v, %v]", ErrInvalidConfig, c.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	if len(c.ID) > 256 {
		return c, fmt.Errorf("%w: ID longer than 256 bytes", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
