package migrate_test

import (
	"testing"

	"github.com/quorumlock/quorumlock/adapters/migrate"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/lock/locktest"
)

// TestConformance runs the contract's suite against Dual Lockers (both
// token modes) from Redis to a three-node embedded cluster, and against
// ToOnly and FromOnly Lockers (the wrapper's tracking of leases and calls
// around one store).
func TestConformance(t *testing.T) {
	from, to := redisStore(t), embeddedStore(t, 3)
	for _, tc := range []struct {
		name string
		cfg  migrate.Config
		opts []locktest.Option
	}{
		// A Dual holder is reported as to knows it, its waiters as from does.
		{"dual", migrate.Config{Phase: migrate.Dual}, []locktest.Option{locktest.WaiterIDsPerStore()}},
		{"dual-from-tokens", migrate.Config{Phase: migrate.Dual, Tokens: migrate.FromTokens}, nil},
		{"from-only", migrate.Config{Phase: migrate.FromOnly}, []locktest.Option{locktest.ListUnordered()}}, // Redis's SCAN
		{"to-only", migrate.Config{Phase: migrate.ToOnly}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			locktest.Run(t, func(t *testing.T) lock.Locker { return newMigrate(t, from, to, tc.cfg) }, tc.opts...)
		})
	}
}
