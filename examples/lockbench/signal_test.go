//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A SIGTERM stops the program as Ctrl-C does: lockd3's processes are
// stopped and its data directory removed before it exits. The program
// runs in a process group of its own, which the test kills at the end
// whatever happened.
func TestRun_TermStopsLockd(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "lockbench")
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	tmp := filepath.Join(dir, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o700))

	cmd := exec.Command(bin, "-backends", "lockd3", "-workloads", "W1", "-duration", "10m", "-warmup", "0s")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	})

	// Every lockd process started (each one's log is made just before).
	require.Eventually(t, func() bool {
		logs, _ := filepath.Glob(filepath.Join(tmp, "lockbench-lockd-*", "n3.log"))
		return len(logs) == 1
	}, 5*time.Minute, 20*time.Millisecond, "lockd n3 started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
	case <-time.After(2 * time.Minute): // lockd's own stop is bounded by 10 s
		t.Fatal("lockbench did not exit within 2 min of SIGTERM")
	}

	left, err := filepath.Glob(filepath.Join(tmp, "lockbench-lockd-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "lockd's data directory is removed")
	assert.ErrorIs(t, syscall.Kill(-pgid, 0), syscall.ESRCH, "no lockd process is left")
}
