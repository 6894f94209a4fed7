package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisReadyTimeout bounds how long StartRedis and Restart wait for PONG.
const RedisReadyTimeout = 10 * time.Second

// RedisOptions configures StartRedis. The zero value is an in-memory server
// without persistence.
type RedisOptions struct {
	// AppendFsyncAlways runs the server with --appendonly yes
	// --appendfsync always, so every acknowledged write survives Kill and
	// Restart (the data directory is kept). The default is --save ""
	// --appendonly no: nothing is persisted and Restart comes back empty.
	AppendFsyncAlways bool
}

// Redis is a redis-server child process on a loopback port. Its methods use
// the testing.TB given to StartRedis and must be called from that test's
// goroutine (or its subtests' goroutines, while it runs).
type Redis struct {
	t    testing.TB
	port int
	dir  string
	opts RedisOptions
	p    *proc
}

// StartRedis starts redis-server on a free 127.0.0.1 port with a temporary
// working directory, waits until it answers PING, and registers a cleanup
// that kills it. A missing redis-server skips t (Debian package
// redis-server), or fails it when QUORUMLOCK_REQUIRE_SERVERS=1.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server not found in PATH; install the Debian package redis-server (apt-get install redis-server)")
	}
	dir := t.TempDir()
	r := &Redis{t: t, dir: dir, opts: opts}
	t.Cleanup(func() { r.p.cleanup(t) })
	for attempt := 0; ; attempt++ {
		ports, err := reservePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		r.port = ports[0]
		r.p = &proc{
			name:    "redis " + r.Addr(),
			path:    bin,
			args:    r.args(),
			dir:     dir,
			logPath: filepath.Join(dir, "redis.log"),
		}
		err = r.p.startReady(RedisReadyTimeout, r.ping)
		if err == nil {
			break
		}
		if attempt == 0 && errors.Is(err, errExited) && r.p.addrInUse() {
			continue // lost the port race; try once more with a fresh port
		}
		failStart(t, r.p, err)
	}
	return r
}

func (r *Redis) args() []string {
	a := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "", // stdout, which goes to redis.log
		"--save", "",
	}
	if r.opts.AppendFsyncAlways {
		return append(a, "--appendonly", "yes", "--appendfsync", "always")
	}
	return append(a, "--appendonly", "no")
}

// Addr returns the client address, "127.0.0.1:port".
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Dir returns the server's working directory (AOF files, log).
func (r *Redis) Dir() string { return r.dir }

// LogPath returns the path of the server's log file.
func (r *Redis) LogPath() string { return r.p.logPath }

// Kill sends SIGKILL to the server and waits for it to exit: a crash.
func (r *Redis) Kill() { r.p.kill() }

// Stop sends SIGTERM to the server and waits for it to exit: an orderly
// shutdown.
func (r *Redis) Stop() { r.p.stop() }

// Restart starts the server again on the same port and data directory
// after Kill or Stop, and waits until it answers PING (with AOF, after it
// has loaded the file). A server still running is killed first.
func (r *Redis) Restart() {
	r.t.Helper()
	r.p.kill()
	if err := r.p.startReady(RedisReadyTimeout, r.ping); err != nil {
		failStart(r.t, r.p, err)
	}
}

// Pause sends SIGSTOP: the server keeps its port and connections but does
// not answer until Resume.
func (r *Redis) Pause() { r.p.pause() }

// Resume sends SIGCONT after Pause.
func (r *Redis) Resume() { r.p.resume() }

// ping sends PING over RESP and expects +PONG.
func (r *Redis) ping(ctx context.Context) error {
	reply, err := redisCommand(ctx, r.Addr(), "PING")
	if err != nil {
		return err
	}
	if reply != "+PONG" {
		return fmt.Errorf("testserver: PING answered %q", reply)
	}
	return nil
}

// redisCommand sends one RESP command on a new connection and returns the
// first reply line without its CRLF (for bulk strings, the payload line
// prefixed with "$": "$value", or "$-1" for nil).
func redisCommand(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	defer context.AfterFunc(ctx, func() { _ = c.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if !strings.HasPrefix(line, "$") || line == "$-1" {
		return line, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return "", fmt.Errorf("testserver: bad bulk length %q", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return "$" + string(buf[:n]), nil
}
