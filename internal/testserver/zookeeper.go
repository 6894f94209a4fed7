package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ZKReadyTimeout bounds how long the ZooKeeper start functions, Restart and
// WaitQuorum wait: the JVM starts slowly on a loaded two-core machine.
const ZKReadyTimeout = 60 * time.Second

// ZKClasspathEnv overrides the Java class path used to run ZooKeeper. By
// default it is built from the Debian jars in /usr/share/java.
const ZKClasspathEnv = "QUORUMLOCK_ZK_CLASSPATH"

// defaultTickTime is ZKOptions.TickTime's default.
const defaultTickTime = 200 * time.Millisecond

// zkMaxSessionTimeout is the configured maxSessionTimeout.
const zkMaxSessionTimeout = 60 * time.Second

// debianJavaDir is where Debian installs the ZooKeeper jars.
const debianJavaDir = "/usr/share/java"

// ZKOptions configures StartZooKeeper and StartEnsemble. The zero value is a
// plain server with a 200 ms tick.
type ZKOptions struct {
	// ExtendedTypes enables TTL nodes
	// (-Dzookeeper.extendedTypesEnabled=true).
	ExtendedTypes bool
	// ContainerCheckInterval is the period of the reaper that deletes empty
	// container nodes and expired TTL nodes
	// (-Dznode.container.checkIntervalMs). Zero keeps the server default
	// (60 s).
	ContainerCheckInterval time.Duration
	// TickTime is ZooKeeper's basic time unit; zero means 200 ms (the
	// server's own default is 2 s). The server accepts session timeouts
	// from 2*TickTime (400 ms by default) up to 60 s, so a short TickTime
	// keeps session-expiry tests fast. initLimit and syncLimit are set in
	// ticks to about 10 s and 3 s.
	TickTime time.Duration
}

func (o ZKOptions) tick() time.Duration {
	if o.TickTime <= 0 {
		return defaultTickTime
	}
	return o.TickTime
}

// ZooKeeper is one ZooKeeper server child process: standalone
// (StartZooKeeper) or a member of an Ensemble. Its methods use the
// testing.TB it was started with.
type ZooKeeper struct {
	t          testing.TB
	myid       int // 0 for standalone
	clientPort int
	dir        string
	p          *proc
}

// Ensemble is a replicated ZooKeeper of n servers on loopback.
type Ensemble struct {
	t       testing.TB
	members []*ZooKeeper
}

// zkRuntime is how to run ZooKeeper on this machine.
type zkRuntime struct {
	java      string
	classpath string
}

// findZK locates java and the ZooKeeper jars, skipping t if absent.
func findZK(t testing.TB) zkRuntime {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		missing(t, "java not found in PATH; install the Debian packages zookeeper and default-jre-headless")
	}
	if cp := os.Getenv(ZKClasspathEnv); cp != "" {
		return zkRuntime{java: java, classpath: cp}
	}
	zk := findJar("zookeeper")
	if zk == "" {
		missing(t, "%s/zookeeper.jar not found; install the Debian package zookeeper (or set %s)", debianJavaDir, ZKClasspathEnv)
	}
	// The Debian zookeeper.jar lists its dependencies in its manifest's
	// Class-Path; name the jute jar and the slf4j API explicitly anyway, and
	// add slf4j-simple as the logging binding (it writes to stderr, which
	// goes to the log file).
	cp := []string{zk}
	for _, name := range []string{"zookeeper-jute", "slf4j-api", "slf4j-simple"} {
		if jar := findJar(name); jar != "" {
			cp = append(cp, jar)
		}
	}
	return zkRuntime{java: java, classpath: strings.Join(cp, string(os.PathListSeparator))}
}

// findJar returns debianJavaDir/name.jar or, failing that, the last
// versioned debianJavaDir/name-<version>.jar, or "".
func findJar(name string) string {
	p := filepath.Join(debianJavaDir, name+".jar")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	matches, _ := filepath.Glob(filepath.Join(debianJavaDir, name+"-[0-9]*.jar"))
	if len(matches) == 0 {
		return ""
	}
	slices.Sort(matches)
	return matches[len(matches)-1]
}

// jvmArgs returns the java command line before the main class.
func (rt zkRuntime) jvmArgs(opts ZKOptions, dir string) []string {
	a := []string{
		// Small heap, no JIT tiers beyond C1, serial GC: fastest start and
		// least CPU on a small shared machine.
		"-Xmx256m",
		"-Xss512k",
		"-XX:+UseSerialGC",
		"-XX:TieredStopAtLevel=1",
		"-XX:-UsePerfData",
		"-Djava.awt.headless=true",
		"-Djava.io.tmpdir=" + dir,
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.jmx.log4j.disable=true",
		// A killed process loses nothing the kernel already has, so
		// fsync buys no durability against Kill; skip it for speed.
		"-Dzookeeper.forceSync=no",
		// Transaction log files are preallocated in blocks (64 MiB by
		// default); 1 MiB keeps temp dirs small.
		"-Dzookeeper.preAllocSize=1024",
		// Quorum connection timeout (default 5 s) slows re-election when
		// a member is gone.
		"-Dzookeeper.cnxTimeout=1000",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
	}
	if opts.ExtendedTypes {
		a = append(a, "-Dzookeeper.extendedTypesEnabled=true")
	}
	if opts.ContainerCheckInterval > 0 {
		ms := max(opts.ContainerCheckInterval.Milliseconds(), 1)
		a = append(a, "-Dznode.container.checkIntervalMs="+strconv.FormatInt(ms, 10))
	}
	return append(a, "-cp", rt.classpath)
}

// zkConfig returns the zoo.cfg common to standalone and ensemble servers.
func zkConfig(opts ZKOptions, dataDir string, clientPort int) string {
	tick := opts.tick()
	ticks := func(d time.Duration) int { return max(int((d+tick-1)/tick), 2) }
	var b strings.Builder
	fmt.Fprintf(&b, "tickTime=%d\n", max(tick.Milliseconds(), 1))
	fmt.Fprintf(&b, "dataDir=%s\n", dataDir)
	fmt.Fprintf(&b, "clientPort=%d\n", clientPort)
	b.WriteString("clientPortAddress=127.0.0.1\n")
	fmt.Fprintf(&b, "maxSessionTimeout=%d\n", zkMaxSessionTimeout.Milliseconds())
	fmt.Fprintf(&b, "initLimit=%d\n", ticks(10*time.Second))
	fmt.Fprintf(&b, "syncLimit=%d\n", ticks(3*time.Second))
	b.WriteString("maxClientCnxns=0\n")
	b.WriteString("admin.enableServer=false\n")
	b.WriteString("4lw.commands.whitelist=ruok,srvr,stat\n")
	return b.String()
}

// newZK prepares (does not start) a ZooKeeper server in dir. peers are the
// server.N lines for an ensemble member, nil for standalone.
func newZK(t testing.TB, rt zkRuntime, opts ZKOptions, dir string, myid, clientPort int, peers []string) (*ZooKeeper, error) {
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	cfg := zkConfig(opts, dataDir, clientPort)
	mainClass := "org.apache.zookeeper.server.ZooKeeperServerMain"
	name := "zookeeper"
	if peers != nil {
		mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
		name = fmt.Sprintf("zookeeper %d", myid)
		// A one-member ensemble stays a quorum (with its epochs: zxids from
		// 2^32 up) instead of falling back to standalone mode.
		cfg += "standaloneEnabled=false\n"
		cfg += strings.Join(peers, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dataDir, "myid"), []byte(strconv.Itoa(myid)+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("testserver: %w", err)
		}
	}
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	z := &ZooKeeper{t: t, myid: myid, clientPort: clientPort, dir: dir}
	args := append(rt.jvmArgs(opts, dir), mainClass, cfgPath)
	z.p = &proc{
		name:    name + " " + z.Addr(),
		path:    rt.java,
		args:    args,
		dir:     dir,
		logPath: filepath.Join(dir, "zookeeper.log"),
	}
	return z, nil
}

// StartZooKeeper starts a standalone ZooKeeper server on a free 127.0.0.1
// port with a temporary data directory, waits until srvr reports
// "Mode: standalone", and registers a cleanup that kills it. A missing Java
// or ZooKeeper skips t (Debian packages zookeeper, default-jre-headless), or
// fails it when QUORUMLOCK_REQUIRE_SERVERS=1.
func StartZooKeeper(t testing.TB, opts ZKOptions) *ZooKeeper {
	t.Helper()
	rt := findZK(t)
	dir := t.TempDir()
	var z *ZooKeeper
	t.Cleanup(func() {
		if z != nil {
			z.p.cleanup(t)
		}
	})
	for attempt := 0; ; attempt++ {
		// Fresh data for a retry.
		_ = os.RemoveAll(filepath.Join(dir, "data"))
		ports, err := reservePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		zk, err := newZK(t, rt, opts, dir, 0, ports[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		z = zk
		err = z.p.startReady(ZKReadyTimeout, z.serving)
		if err == nil {
			break
		}
		if attempt == 0 && errors.Is(err, errExited) && z.p.addrInUse() {
			continue // lost the port race; try once more with a fresh port
		}
		failStart(t, z.p, err)
	}
	return z
}

// StartEnsemble starts n ZooKeeper servers (QuorumPeerMain, myid 1..n) on
// free 127.0.0.1 client, quorum and election ports, each with its own
// temporary data directory, waits until every member serves as leader or
// follower, and registers cleanups that kill them. Use n = 3 (or 5).
func StartEnsemble(t testing.TB, n int, opts ZKOptions) *Ensemble {
	t.Helper()
	if n < 1 {
		t.Fatalf("testserver: StartEnsemble: n = %d, want at least 1", n)
	}
	rt := findZK(t)
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	e := &Ensemble{t: t}
	t.Cleanup(func() {
		for _, z := range e.members {
			if z != nil {
				z.p.cleanup(t)
			}
		}
	})
	for attempt := 0; ; attempt++ {
		ports, err := reservePorts(3 * n)
		if err != nil {
			t.Fatal(err)
		}
		peers := make([]string, n)
		for i := range n {
			peers[i] = fmt.Sprintf("server.%d=127.0.0.1:%d:%d", i+1, ports[3*i+1], ports[3*i+2])
		}
		e.members = make([]*ZooKeeper, n)
		for i := range n {
			// Fresh data for a retry: a half-started member may have
			// written an epoch file.
			_ = os.RemoveAll(filepath.Join(dirs[i], "data"))
			z, err := newZK(t, rt, opts, dirs[i], i+1, ports[3*i], peers)
			if err != nil {
				t.Fatal(err)
			}
			e.members[i] = z
		}
		failed, err := e.startAll()
		if err == nil {
			break
		}
		inUse := false
		for _, z := range e.members {
			inUse = inUse || (!z.p.running() && z.p.addrInUse())
		}
		e.killAll()
		if attempt == 0 && inUse {
			continue // lost a port race; try once more with fresh ports
		}
		failStart(t, failed.p, err)
	}
	return e
}

// startAll starts every member and waits until each serves. On error it
// returns the member that failed; the caller kills all.
func (e *Ensemble) startAll() (*ZooKeeper, error) {
	for _, z := range e.members {
		if err := z.p.start(); err != nil {
			return z, err
		}
	}
	deadline := time.Now().Add(ZKReadyTimeout)
	for _, z := range e.members {
		if err := z.p.waitReady(time.Until(deadline), z.serving); err != nil {
			return z, err
		}
	}
	return nil, nil
}

func (e *Ensemble) killAll() {
	for _, z := range e.members {
		z.p.kill()
	}
}

// KillAll sends SIGKILL to every running member and waits for them to exit.
func (e *Ensemble) KillAll() { e.killAll() }

// RestartAll kills the members still running, starts all of them again
// with their ports and data directories, and waits until every member
// serves. Use it after losing a quorum: a single member's Restart waits
// until that member serves, which needs a majority of live members.
func (e *Ensemble) RestartAll() {
	e.t.Helper()
	e.killAll()
	if failed, err := e.startAll(); err != nil {
		e.killAll()
		failStart(e.t, failed.p, err)
	}
}

// Servers returns the members' client addresses, in member order.
func (e *Ensemble) Servers() []string {
	addrs := make([]string, len(e.members))
	for i, z := range e.members {
		addrs[i] = z.Addr()
	}
	return addrs
}

// Member returns member i (0-based; its myid is i+1).
func (e *Ensemble) Member(i int) *ZooKeeper { return e.members[i] }

// Len returns the number of members.
func (e *Ensemble) Len() int { return len(e.members) }

// WaitQuorum waits until the ensemble serves: every member that is running
// and not paused reports Mode leader or follower in srvr, exactly one of
// them is the leader, and together they are a majority. It fails t after
// ZKReadyTimeout.
func (e *Ensemble) WaitQuorum(t testing.TB) {
	t.Helper()
	if _, err := e.waitQuorum(ZKReadyTimeout); err != nil {
		t.Fatal(err)
	}
}

// Leader waits like WaitQuorum and returns the index of the leader.
func (e *Ensemble) Leader(t testing.TB) int {
	t.Helper()
	leader, err := e.waitQuorum(ZKReadyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

func (e *Ensemble) waitQuorum(timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last string
	for {
		leader, state, ok := e.quorumState(ctx)
		if ok {
			return leader, nil
		}
		last = state
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("testserver: ensemble has no serving quorum after %v; last seen: %s", timeout, last)
		case <-ticker.C:
		}
	}
}

// quorumState polls every live member once.
func (e *Ensemble) quorumState(ctx context.Context) (leader int, state string, ok bool) {
	leader, leaders, serving, live := -1, 0, 0, 0
	var modes []string
	for i, z := range e.members {
		if !z.p.running() || z.p.isPaused() {
			modes = append(modes, fmt.Sprintf("%d:down", i))
			continue
		}
		live++
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		mode, err := zkMode(attempt, z.Addr())
		cancel()
		if err != nil {
			modes = append(modes, fmt.Sprintf("%d:%v", i, err))
			continue
		}
		modes = append(modes, fmt.Sprintf("%d:%s", i, mode))
		switch mode {
		case "leader":
			leader = i
			leaders++
			serving++
		case "follower":
			serving++
		}
	}
	ok = leaders == 1 && serving == live && serving > len(e.members)/2
	return leader, strings.Join(modes, " "), ok
}

// Addr returns the client address, "127.0.0.1:port".
func (z *ZooKeeper) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(z.clientPort))
}

// Dir returns the server's directory (zoo.cfg, data/, zookeeper.log).
func (z *ZooKeeper) Dir() string { return z.dir }

// LogPath returns the path of the server's log file.
func (z *ZooKeeper) LogPath() string { return z.p.logPath }

// Mode returns the server's current Mode from srvr ("standalone",
// "leader", "follower"), or "" when it does not answer or is not serving.
func (z *ZooKeeper) Mode() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	mode, err := zkMode(ctx, z.Addr())
	if err != nil {
		return ""
	}
	return mode
}

// Kill sends SIGKILL to the server and waits for it to exit: a crash.
func (z *ZooKeeper) Kill() { z.p.kill() }

// Stop sends SIGTERM to the server and waits for it to exit: an orderly
// shutdown.
func (z *ZooKeeper) Stop() { z.p.stop() }

// Restart starts the server again with the same ports and data directory
// after Kill or Stop, and waits until it serves (an ensemble member: as
// leader or follower, which needs a majority of live members — after losing
// the majority use Ensemble.RestartAll). A server still running is killed
// first.
func (z *ZooKeeper) Restart() {
	z.t.Helper()
	z.p.kill()
	if err := z.p.startReady(ZKReadyTimeout, z.serving); err != nil {
		failStart(z.t, z.p, err)
	}
}

// Pause sends SIGSTOP: the server keeps its ports and connections but does
// nothing until Resume; its sessions' clients see timeouts.
func (z *ZooKeeper) Pause() { z.p.pause() }

// Resume sends SIGCONT after Pause.
func (z *ZooKeeper) Resume() { z.p.resume() }

// serving is the readiness check: srvr reports the expected Mode.
func (z *ZooKeeper) serving(ctx context.Context) error {
	mode, err := zkMode(ctx, z.Addr())
	if err != nil {
		return err
	}
	if z.myid == 0 && mode == "standalone" || z.myid != 0 && (mode == "leader" || mode == "follower") {
		return nil
	}
	return fmt.Errorf("testserver: %s mode %q", z.p.name, mode)
}

// errNotServing is srvr's answer before the server serves.
var errNotServing = errors.New("testserver: zookeeper is not serving requests")

// zkMode sends srvr and returns the value of its "Mode:" line.
func zkMode(ctx context.Context, addr string) (string, error) {
	out, err := fourLetter(ctx, addr, "srvr")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(out) {
		if mode, ok := strings.CutPrefix(line, "Mode:"); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	if strings.Contains(out, "not currently serving") {
		return "", errNotServing
	}
	return "", fmt.Errorf("testserver: srvr answered %q", out)
}

// fourLetter sends a four-letter-word command and returns the whole answer.
func fourLetter(ctx context.Context, addr, cmd string) (string, error) {
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
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
