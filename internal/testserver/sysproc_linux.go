package testserver

import "syscall"

// sysProcAttr puts the child in its own process group, so that signals reach
// everything it forks, and asks the kernel to SIGKILL it should the test
// binary die without running its cleanups (go test -timeout, os.Exit).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
