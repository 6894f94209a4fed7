package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestNew_InvalidConfig(t *testing.T) {
	for _, cfg := range []Config{
		{SessionTTL: time.Millisecond},
		{SessionTTL: 2 * time.Hour},
		{SessionTTL: -time.Second},
		{ID: string(make([]byte, 300))},
		{SnapshotInterval: time.Millisecond},
		{Timing: Timing(7)},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}
