package lock

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateLimit(t *testing.T) {
	for _, ok := range []int{1, 2, MaxPermits} {
		require.NoError(t, ValidateLimit(ok), "%d", ok)
	}
	for _, bad := range []int{-1, 0, MaxPermits + 1} {
		err := ValidateLimit(bad)
		require.ErrorIs(t, err, ErrInvalidOption, "%d", bad)
		assert.Contains(t, err.Error(), "limit")
	}
}

func TestValidateValue(t *testing.T) {
	require.NoError(t, ValidateValue(""))
	require.NoError(t, ValidateValue("host-a:8080 ключ"))
	require.NoError(t, ValidateValue(strings.Repeat("v", MaxOwnerLen)))
	require.ErrorIs(t, ValidateValue(strings.Repeat("v", MaxOwnerLen+1)), ErrInvalidOption)
	require.ErrorIs(t, ValidateValue("a\xffb"), ErrInvalidOption)
}

func TestLeaderInfo_Elected(t *testing.T) {
	assert.False(t, LeaderInfo{Election: "e"}.Elected(), "token 0: the seat is empty")
	assert.True(t, LeaderInfo{Election: "e", Token: 7}.Elected())
	assert.NotErrorIs(t, ErrNoLeader, ErrNotHeld)
}
