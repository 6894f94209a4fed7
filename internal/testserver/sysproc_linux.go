package testserver

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr puts the child in its own process group, so that signals reach
// everything it forks, and asks the kernel to SIGKILL it should the test
// binary die without running its cleanups (go test -timeout, os.Exit).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until every thread of process pid is stopped (state T
// in /proc), the process is gone, or timeout passes. SIGSTOP takes effect
// asynchronously: a thread of a busy JVM can still answer a request just
// after kill(2) returned, which a test that pauses a server must not see.
func waitStopped(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if allStopped(pid) {
			return
		}
		time.Sleep(time.Millisecond) // polling the kernel's view; nothing to wait on
	}
}

// allStopped reports whether every thread of pid is stopped, or pid is gone.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true // gone
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses, so the
		// state follows the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return false
		}
		if s := stat[i+2]; s != 'T' && s != 't' {
			return false
		}
	}
	return true
}
