package lock

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateName(t *testing.T) {
	for _, c := range []struct {
		what string
		name string
		ok   bool
	}{
		{"one byte", "a", true},
		{"512 bytes", strings.Repeat("n", MaxNameLen), true},
		{"512 bytes of 2-byte runes", strings.Repeat("é", MaxNameLen/2), true},
		{"multi-byte", "ключ-鍵-🔒", true},
		{"slashes and dots", "/a//b/../.", true},
		{"spaces and punctuation", ` a:b*c?{d}[e]%2F\'"`, true},
		{"zero-width space (format, not control)", "a\u200bb", true},
		{"private use", "\ue000", true},
		{"noncharacter", "\ufffe", true},

		{"empty", "", false},
		{"513 bytes", strings.Repeat("n", MaxNameLen+1), false},
		{"513 bytes ending in a 2-byte rune", strings.Repeat("n", MaxNameLen-1) + "é", false},
		{"invalid UTF-8", "a\xffb", false},
		{"truncated UTF-8", "a\xe2\x82", false},
		{"UTF-16 surrogate encoded in UTF-8", "\xed\xa0\x80", false},
		{"NUL", "a\x00b", false},
		{"newline", "a\nb", false},
		{"carriage return", "a\rb", false},
		{"tab", "\t", false},
		{"escape", "\x1b[0m", false},
		{"DEL", "a\x7f", false},
		{"C1 control NEL", "a\u0085", false},
		{"C1 control U+009F", "\u009f", false},
	} {
		t.Run(c.what, func(t *testing.T) {
			err := ValidateName(c.name)
			if c.ok {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, ErrInvalidName)
			assert.ErrorContains(t, err, "quorumlock: invalid lock name: ")
		})
	}
}

func TestNewOptions(t *testing.T) {
	maxOwner := strings.Repeat("o", MaxOwnerLen)
	for _, c := range []struct {
		what    string
		opts    []Option
		wantTTL time.Duration
		owner   string
		ok      bool
	}{
		{"none: a session lease", nil, 0, "", true},
		{"empty list", []Option{}, 0, "", true},
		{"MinTTL", []Option{WithTTL(MinTTL)}, MinTTL, "", true},
		{"MaxTTL", []Option{WithTTL(MaxTTL)}, MaxTTL, "", true},
		{"owner", []Option{WithOwner("host-1")}, 0, "host-1", true},
		{"owner of exactly MaxOwnerLen", []Option{WithOwner(maxOwner)}, 0, maxOwner, true},
		{"owner of multi-byte UTF-8", []Option{WithOwner("höst-1")}, 0, "höst-1", true},
		{"TTL and owner", []Option{WithOwner("x"), WithTTL(time.Second)}, time.Second, "x", true},
		{"the last TTL wins", []Option{WithTTL(time.Second), WithTTL(2 * time.Second)}, 2 * time.Second, "", true},
		{"a valid TTL replaces an invalid one", []Option{WithTTL(0), WithTTL(time.Second)}, time.Second, "", true},
		{"the last owner wins", []Option{WithOwner("a"), WithOwner("b")}, 0, "b", true},

		{"TTL 0", []Option{WithTTL(0)}, 0, "", false},
		{"TTL -1", []Option{WithTTL(-1)}, 0, "", false},
		{"TTL 50ms", []Option{WithTTL(50 * time.Millisecond)}, 0, "", false},
		{"TTL MinTTL-1ns", []Option{WithTTL(MinTTL - 1)}, 0, "", false},
		{"TTL MaxTTL+1ns", []Option{WithTTL(MaxTTL + 1)}, 0, "", false},
		{"TTL 25h", []Option{WithTTL(25 * time.Hour)}, 0, "", false},
		{"an invalid TTL replaces a valid one", []Option{WithTTL(time.Second), WithTTL(0)}, 0, "", false},
		{"owner of MaxOwnerLen+1", []Option{WithOwner(maxOwner + "o")}, 0, "", false},
		{"owner not UTF-8", []Option{WithOwner("\xff")}, 0, "", false},
		{"owner with truncated UTF-8", []Option{WithOwner("host-\xe2\x82")}, 0, "", false},
		{"nil Option", []Option{nil}, 0, "", false},
		{"nil Option after valid ones", []Option{WithOwner("x"), WithTTL(time.Second), nil}, 0, "", false},
	} {
		t.Run(c.what, func(t *testing.T) {
			o, err := NewOptions(c.opts...)
			if !c.ok {
				assert.ErrorIs(t, err, ErrInvalidOption)
				assert.ErrorContains(t, err, "quorumlock: invalid option: ")
				assert.Zero(t, o, "Options returned with an error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.wantTTL, o.TTL, "TTL")
			assert.True(t, c.owner == o.Owner, "Owner: %d bytes, want %d", len(o.Owner), len(c.owner))
		})
	}
}

func TestValidateRequest(t *testing.T) {
	o, err := ValidateRequest("a", WithTTL(time.Second), WithOwner("x"))
	require.NoError(t, err)
	assert.Equal(t, time.Second, o.TTL)
	assert.Equal(t, "x", o.Owner)

	_, err = ValidateRequest("", WithTTL(0))
	assert.ErrorIs(t, err, ErrInvalidName, "the name is checked first")
	assert.NotErrorIs(t, err, ErrInvalidOption)

	_, err = ValidateRequest("a", WithTTL(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	assert.NotErrorIs(t, err, ErrInvalidName)
}

func TestTokenFromContext(t *testing.T) {
	tok, ok := TokenFromContext(context.Background())
	assert.False(t, ok, "outside Do")
	assert.Zero(t, tok)

	type otherKey struct{}
	ctx := context.WithValue(context.Background(), otherKey{}, uint64(9))
	_, ok = TokenFromContext(ctx)
	assert.False(t, ok, "a uint64 under another key is not a token")

	ctx = withToken(ctx, 42)
	tok, ok = TokenFromContext(ctx)
	assert.True(t, ok)
	assert.Equal(t, uint64(42), tok)

	child, cancel := context.WithCancel(ctx)
	cancel()
	tok, ok = TokenFromContext(child)
	assert.True(t, ok, "derived contexts carry the token")
	assert.Equal(t, uint64(42), tok)

	tok, _ = TokenFromContext(withToken(child, 43))
	assert.Equal(t, uint64(43), tok, "the innermost token wins")
}
