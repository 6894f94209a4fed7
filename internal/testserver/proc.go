package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireServersEnv names the environment variable that turns a missing
// server binary from a skip into a failure. Set it to "1" in CI, where the
// servers are expected to be installed.
const RequireServersEnv = "QUORUMLOCK_REQUIRE_SERVERS"

// stopGrace is how long Stop waits after SIGTERM before it falls back to
// SIGKILL.
const stopGrace = 30 * time.Second

// pollInterval is the readiness polling period.
const pollInterval = 20 * time.Millisecond

// logTailLines is how many lines of a server's log are shown on failure.
const logTailLines = 40

// missing skips t, or fails it when RequireServersEnv is "1".
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireServersEnv) == "1" {
		t.Fatalf("testserver: %s (%s=1, so this is fatal)", msg, RequireServersEnv)
	}
	t.Skipf("testserver: %s (set %s=1 to make this fatal)", msg, RequireServersEnv)
}

// reservePorts is freePorts; tests replace it to provoke a port race.
var reservePorts = freePorts

// freePorts reserves n distinct free loopback ports by listening on
// 127.0.0.1:0 and closing the listeners again. All n listeners are open at
// the same time so the ports are distinct. Between the close and the server's
// own bind another process may take a port; the Start functions retry once
// with fresh ports when the server reports that its address is in use.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testserver: reserve port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errExited reports that the server process ended before it became ready.
var errExited = errors.New("testserver: server exited before it was ready")

// proc is one child server process that can be stopped and started again
// with the same command line. It runs in its own process group; every
// signal goes to the whole group.
type proc struct {
	name    string // for messages, e.g. "redis 127.0.0.1:6379"
	path    string
	args    []string
	dir     string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process was reaped
	paused bool
	logOff int64 // size of the log when the current run started

	tailShown bool // failStart already printed the log tail
}

// start launches the process. It is an error to start a running process.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return fmt.Errorf("testserver: %s: already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testserver: %s: open log: %w", p.name, err)
	}
	defer func() { _ = f.Close() }() // the child holds its own descriptor
	if fi, err := f.Stat(); err == nil {
		p.logOff = fi.Size()
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testserver: %s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed server is not interesting
		close(done)
	}()
	p.cmd, p.done, p.paused = cmd, done, false
	return nil
}

func (p *proc) runningLocked() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// running reports whether the process has been started and not yet reaped.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

// isPaused reports whether the process is running and stopped by Pause.
func (p *proc) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked() && p.paused
}

// exited returns a channel closed when the current run ends (nil if never
// started).
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

func (p *proc) signalLocked(sig syscall.Signal) {
	if !p.runningLocked() {
		return
	}
	// Negative pid: the whole process group (Setpgid made pgid == pid).
	// ESRCH just means the group is already gone.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// kill sends SIGKILL to the process group and waits until the process was
// reaped. It is a no-op when the process is not running.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return
	}
	p.signalLocked(syscall.SIGKILL)
	p.signalLocked(syscall.SIGCONT) // harmless; SIGKILL already ends stopped processes
	<-p.done
	p.paused = false
}

// stop sends SIGCONT (in case it is paused) and SIGTERM to the process group
// and waits for the process to exit, falling back to SIGKILL after
// stopGrace.
func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return
	}
	p.signalLocked(syscall.SIGCONT)
	p.signalLocked(syscall.SIGTERM)
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.signalLocked(syscall.SIGKILL)
		<-p.done
	}
	p.paused = false
}

// pause sends SIGSTOP to the process group and waits (up to 5 s) until
// the server's threads are stopped.
func (p *proc) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return
	}
	p.signalLocked(syscall.SIGSTOP)
	p.paused = true
	waitStopped(p.cmd.Process.Pid, 5*time.Second)
}

// resume sends SIGCONT to the process group.
func (p *proc) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return
	}
	p.signalLocked(syscall.SIGCONT)
	p.paused = false
}

// waitReady polls ready until it returns nil, the process exits (errExited)
// or timeout passes.
func (p *proc) waitReady(timeout time.Duration, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := p.exited()
	// Abort a probe in flight when the process exits: something else may
	// be listening on the port and never answer.
	probeCtx, cancelProbes := context.WithCancel(ctx)
	defer cancelProbes()
	go func() {
		select {
		case <-done:
			cancelProbes()
		case <-probeCtx.Done():
		}
	}()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(probeCtx, time.Second)
		last = ready(attempt)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%w: %s", errExited, p.name)
		default:
		}
		select {
		case <-done:
			return fmt.Errorf("%w: %s", errExited, p.name)
		case <-ctx.Done():
			return fmt.Errorf("testserver: %s not ready after %v: %w", p.name, timeout, last)
		case <-ticker.C:
		}
	}
}

// logSinceStart returns what the current run wrote to the log so far.
func (p *proc) logSinceStart() string {
	p.mu.Lock()
	off := p.logOff
	p.mu.Unlock()
	b, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// logTail returns the last n lines of the log file.
func (p *proc) logTail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", p.logPath, err)
	}
	defer func() { _ = f.Close() }()
	const maxTail = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		_, _ = f.Seek(fi.Size()-maxTail, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// addrInUse reports whether the current run's log says a bind failed.
func (p *proc) addrInUse() bool {
	return strings.Contains(p.logSinceStart(), "ddress already in use")
}

// startReady starts the process and waits until ready, returning an error
// with the log tail on failure (the process is killed then).
func (p *proc) startReady(timeout time.Duration, ready func(ctx context.Context) error) error {
	if err := p.start(); err != nil {
		return err
	}
	if err := p.waitReady(timeout, ready); err != nil {
		p.kill()
		return err
	}
	return nil
}

// cleanup kills the process (and its group), printing the log tail first
// if t failed. Servers register it with t.Cleanup right after t.TempDir, and
// before starting anything, so it runs even if the start is interrupted and
// before the directory is removed (cleanups run last-in first-out).
func (p *proc) cleanup(t testing.TB) {
	if p == nil {
		return
	}
	if t.Failed() && !p.tailShown {
		t.Logf("testserver: %s log %s (last %d lines):\n%s", p.name, p.logPath, logTailLines, p.logTail(logTailLines))
	}
	p.kill()
}

// failStart fails t with err and the tail of p's log.
func failStart(t testing.TB, p *proc, err error) {
	t.Helper()
	p.tailShown = true
	t.Fatalf("%v\n--- %s log %s (last %d lines) ---\n%s", err, p.name, p.logPath, logTailLines, p.logTail(logTailLines))
}
