//go:build !unix

package raftlog

import "time"

// lockDir does nothing where flock is not available.
func lockDir(string, time.Duration) (func() error, error) {
	return func() error { return nil }, nil
}
