package lock

import (
	"testing"

	"go.uber.org/goleak"
)

// Do starts a goroutine (context.AfterFunc) when a lease ends under fn.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
