package fsm

import (
	"os"
	"testing"
)

// TestMain raises the level this package's tests apply to protocol 5, the
// draft this build does not apply (version.go, draftProtocol), so that the
// state machine's half of it is tested before it is released. node's
// tests run at the released level and check that a build refuses the
// draft (node/version_test.go).
func TestMain(m *testing.M) {
	applies = draftProtocol
	os.Exit(m.Run())
}
