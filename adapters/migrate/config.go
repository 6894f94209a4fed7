package migrate

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/quorumlock/quorumlock/lock"
)

// Phase is the step of a move a Locker is in (DESIGN.md, "Phases").
type Phase uint8

// Phases, in the order of a move.
const (
	// FromOnly uses from alone, as the code before the move did.
	FromOnly Phase = iota + 1
	// Dual holds every lease in from and in to.
	Dual
	// ToOnly uses to alone.
	ToOnly
)

func (p Phase) String() string {
	switch p {
	case FromOnly:
		return "from-only"
	case Dual:
		return "dual"
	case ToOnly:
		return "to-only"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// ParsePhase parses a Phase's String form. The error wraps
// lock.ErrInvalidOption.
func ParsePhase(s string) (Phase, error) {
	for _, p := range []Phase{FromOnly, Dual, ToOnly} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown migration phase %q (from-only, dual or to-only)", lock.ErrInvalidOption, s)
}

// Tokens says which token a Dual lease carries (DESIGN.md, "Tokens").
type Tokens uint8

// Token modes.
const (
	// FencedTokens, the default: both stores are floored so that tokens
	// increase across every step of the move; a Dual lease carries to's
	// token. Both Lockers must implement lock.TokenFloorer.
	FencedTokens Tokens = iota
	// FromTokens: no floors; a Dual lease carries from's token. Tokens
	// increase through the first step only.
	FromTokens
)

// DefaultCleanupTimeout bounds the release of a half left behind by a
// failed or cancelled call, or by the end of the other half.
const DefaultCleanupTimeout = 10 * time.Second

// Config configures a Locker.
type Config struct {
	// Phase is required.
	Phase Phase
	// Tokens is FencedTokens unless set.
	Tokens Tokens
	// CleanupTimeout bounds each release of a half left behind; 0 means
	// DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// Logger receives what an operator must know (a half that could not be
	// released); nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	switch c.Phase {
	case FromOnly, Dual, ToOnly:
	default:
		return c, fmt.Errorf("%w: migrate: Config.Phase must be FromOnly, Dual or ToOnly, not %v", lock.ErrInvalidOption, c.Phase)
	}
	if c.Tokens != FencedTokens && c.Tokens != FromTokens {
		return c, fmt.Errorf("%w: migrate: unknown Config.Tokens %d", lock.ErrInvalidOption, c.Tokens)
	}
	if c.CleanupTimeout < 0 {
		return c, fmt.Errorf("%w: migrate: negative Config.CleanupTimeout %v", lock.ErrInvalidOption, c.CleanupTimeout)
	}
	if c.CleanupTimeout == 0 {
		c.CleanupTimeout = DefaultCleanupTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
