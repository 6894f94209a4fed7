package lock

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLossSentinels(t *testing.T) {
	for _, err := range []error{ErrRevoked, ErrAdopted} {
		wrapped := fmt.Errorf("lease %q: %w", "x", err)
		assert.ErrorIs(t, wrapped, err, "the sentinel itself")
		assert.ErrorIs(t, wrapped, ErrLost, "%v must also be ErrLost", err)
		assert.NotErrorIs(t, wrapped, ErrReleased)
		assert.NotErrorIs(t, ErrLost, err, "ErrLost is not %v", err)
	}
	assert.NotErrorIs(t, ErrRevoked, ErrAdopted)
	assert.NotErrorIs(t, ErrAdopted, ErrRevoked)
	assert.ErrorIs(t, fmt.Errorf("x: %w", ErrUnsupported), errors.ErrUnsupported)
	assert.ErrorIs(t, fmt.Errorf("x: %w", ErrUnsupported), ErrUnsupported)
	assert.NotErrorIs(t, errors.ErrUnsupported, ErrUnsupported)
	behind := fmt.Errorf("x: %w", ErrTokensBehind)
	assert.ErrorIs(t, behind, ErrUnsupported, "ErrTokensBehind is also ErrUnsupported")
	assert.ErrorIs(t, behind, ErrTokensBehind)
	assert.NotErrorIs(t, fmt.Errorf("x: %w", ErrUnsupported), ErrTokensBehind)
}

func TestKindString(t *testing.T) {
	assert.Equal(t, "none", KindNone.String())
	assert.Equal(t, "session", KindSession.String())
	assert.Equal(t, "ttl", KindTTL.String())
	assert.Equal(t, "Kind(7)", Kind(7).String())
}

func TestNewInspectOptions(t *testing.T) {
	o, err := NewInspectOptions()
	require.NoError(t, err)
	assert.Equal(t, DefaultQueueLimit, o.QueueLimit, "default")
	for _, n := range []int{0, 1, MaxQueueLimit} {
		o, err := NewInspectOptions(WithQueueLimit(n))
		require.NoError(t, err, "limit %d", n)
		assert.Equal(t, n, o.QueueLimit)
	}
	for _, opt := range []InspectOption{WithQueueLimit(-1), WithQueueLimit(MaxQueueLimit + 1), nil} {
		_, err := NewInspectOptions(opt)
		assert.ErrorIs(t, err, ErrInvalidOption)
	}
}

func TestNewListOptions(t *testing.T) {
	o, err := NewListOptions("")
	require.NoError(t, err)
	assert.Equal(t, ListOptions{Limit: DefaultListLimit}, o, "defaults")
	o, err = NewListOptions("jobs/", WithLimit(MaxListLimit), WithCursor("c"), WithLimit(7))
	require.NoError(t, err)
	assert.Equal(t, ListOptions{Limit: 7, Cursor: "c"}, o, "options apply in order")

	for _, c := range []struct {
		what   string
		prefix string
		opts   []ListOption
		want   error
	}{
		{"limit 0", "", []ListOption{WithLimit(0)}, ErrInvalidOption},
		{"limit over the maximum", "", []ListOption{WithLimit(MaxListLimit + 1)}, ErrInvalidOption},
		{"nil option", "", []ListOption{nil}, ErrInvalidOption},
		{"oversize cursor", "", []ListOption{WithCursor(strings.Repeat("c", MaxCursorLen+1))}, ErrInvalidOption},
		{"control character in the prefix", "a\nb", nil, ErrInvalidName},
		{"oversize prefix", strings.Repeat("p", MaxNameLen+1), nil, ErrInvalidName},
	} {
		_, err := NewListOptions(c.prefix, c.opts...)
		assert.ErrorIs(t, err, c.want, c.what)
	}
}

func TestValidateToken(t *testing.T) {
	assert.NoError(t, ValidateToken(1))
	assert.ErrorIs(t, ValidateToken(0), ErrNotHeld)
}
