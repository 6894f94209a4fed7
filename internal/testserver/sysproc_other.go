//go:build unix && !linux

package testserver

import "syscall"

// sysProcAttr puts the child in its own process group, so that signals reach
// everything it forks.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
