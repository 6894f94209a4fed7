//go:build unix && !linux

package testserver

import (
	"syscall"
	"time"
)

// sysProcAttr puts the child in its own process group, so that signals reach
// everything it forks.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped cannot observe the process state here; SIGSTOP is assumed to
// take effect at once.
func waitStopped(int, time.Duration) {}
