package node

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The identity options need a cluster, and AllowJoin needs an identity to
// check (TLS or ClusterKey): without one it could not be enforced.
func TestNew_IdentityConfig(t *testing.T) {
	allow := func(string) bool { return true }
	for name, cfg := range map[string]Config{
		"key without cluster":        {ClusterKey: make([]byte, 32)},
		"AllowJoin without cluster":  {AllowJoin: allow},
		"AllowJoin without identity": {Addr: "127.0.0.1:0", Peers: []Peer{{ID: DefaultID}}, AllowJoin: allow},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
}
