package testserver

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// do sends one RESP command to addr with a short deadline.
func do(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return redisCommand(ctx, addr, args...)
}

// refused asserts that nothing accepts connections on addr.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
	}
	assert.Error(t, err, "server at %s still accepts connections", addr)
}

func TestRedis_InMemory(t *testing.T) {
	start := time.Now()
	r := StartRedis(t, RedisOptions{})
	t.Logf("redis start: %v", time.Since(start))

	reply, err := do(t, r.Addr(), "SET", "k", "v")
	require.NoError(t, err)
	assert.Equal(t, "+OK", reply)
	reply, err = do(t, r.Addr(), "GET", "k")
	require.NoError(t, err)
	assert.Equal(t, "$v", reply)
	reply, err = do(t, r.Addr(), "INFO", "persistence")
	require.NoError(t, err)
	assert.Contains(t, reply, "aof_enabled:0")

	// Without persistence a restart comes back empty, on the same port.
	r.Kill()
	refused(t, r.Addr())
	r.Restart()
	reply, err = do(t, r.Addr(), "GET", "k")
	require.NoError(t, err)
	assert.Equal(t, "$-1", reply)

	r.Stop()
	refused(t, r.Addr())
	r.Restart()
	reply, err = do(t, r.Addr(), "PING")
	require.NoError(t, err)
	assert.Equal(t, "+PONG", reply)
}

func TestRedis_AppendFsyncAlways(t *testing.T) {
	r := StartRedis(t, RedisOptions{AppendFsyncAlways: true})
	addr := r.Addr()

	reply, err := do(t, addr, "INFO", "persistence")
	require.NoError(t, err)
	assert.Contains(t, reply, "aof_enabled:1")
	reply, err = do(t, addr, "SET", "durable", "yes")
	require.NoError(t, err)
	require.Equal(t, "+OK", reply)

	r.Kill()
	r.Restart()
	assert.Equal(t, addr, r.Addr())
	reply, err = do(t, addr, "GET", "durable")
	require.NoError(t, err)
	assert.Equal(t, "$yes", reply, "acknowledged SET must survive SIGKILL with appendfsync always")
}

func TestRedis_PauseResume(t *testing.T) {
	r := StartRedis(t, RedisOptions{})

	r.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := redisCommand(ctx, r.Addr(), "PING")
	cancel()
	assert.Error(t, err, "a paused server must not answer")

	r.Resume()
	reply, err := do(t, r.Addr(), "PING")
	require.NoError(t, err)
	assert.Equal(t, "+PONG", reply)

	// The cleanup must also handle a server left paused.
	r.Pause()
}

func fourLetterT(t *testing.T, addr, cmd string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fourLetter(ctx, addr, cmd)
}

func TestZooKeeper_Standalone(t *testing.T) {
	start := time.Now()
	z := StartZooKeeper(t, ZKOptions{ExtendedTypes: true, ContainerCheckInterval: 100 * time.Millisecond})
	t.Logf("zookeeper standalone start: %v", time.Since(start))

	out, err := fourLetterT(t, z.Addr(), "ruok")
	require.NoError(t, err)
	assert.Equal(t, "imok", out)
	assert.Equal(t, "standalone", z.Mode())

	addr := z.Addr()
	z.Kill()
	refused(t, addr)
	assert.Empty(t, z.Mode())

	start = time.Now()
	z.Restart()
	t.Logf("zookeeper standalone restart: %v", time.Since(start))
	assert.Equal(t, addr, z.Addr())
	assert.Equal(t, "standalone", z.Mode())

	z.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = zkMode(ctx, z.Addr())
	cancel()
	assert.Error(t, err, "a paused server must not answer")
	z.Resume()
	assert.Equal(t, "standalone", z.Mode())

	z.Stop()
	refused(t, addr)
}

func TestEnsemble(t *testing.T) {
	start := time.Now()
	e := StartEnsemble(t, 3, ZKOptions{})
	t.Logf("zookeeper ensemble (3) start: %v", time.Since(start))
	addrs := e.Servers()
	require.Len(t, addrs, 3)

	leader := e.Leader(t)
	modes := map[string]int{}
	for i := range 3 {
		modes[e.Member(i).Mode()]++
	}
	assert.Equal(t, map[string]int{"leader": 1, "follower": 2}, modes)

	// Kill the leader: the other two elect a new one and keep serving.
	e.Member(leader).Kill()
	start = time.Now()
	newLeader := e.Leader(t)
	t.Logf("zookeeper ensemble re-election: %v", time.Since(start))
	assert.NotEqual(t, leader, newLeader)
	for i := range 3 {
		if i == leader {
			assert.Empty(t, e.Member(i).Mode())
			continue
		}
		assert.Contains(t, []string{"leader", "follower"}, e.Member(i).Mode())
	}

	// The killed member rejoins on its old ports as a follower.
	start = time.Now()
	e.Member(leader).Restart()
	t.Logf("zookeeper ensemble member restart: %v", time.Since(start))
	e.WaitQuorum(t)
	assert.Equal(t, "follower", e.Member(leader).Mode())

	// Losing the majority: the last member cannot serve alone; all three
	// come back together.
	e.Member(0).Kill()
	e.Member(1).Kill()
	require.Eventually(t, func() bool { return e.Member(2).Mode() == "" }, ZKReadyTimeout, 50*time.Millisecond,
		"a lone member must stop serving")
	start = time.Now()
	e.RestartAll()
	t.Logf("zookeeper ensemble restart all: %v", time.Since(start))
	e.WaitQuorum(t)
	assert.Equal(t, []string{addrs[0], addrs[1], addrs[2]}, e.Servers())
}

// TestRedis_PortRace makes the first port offered to StartRedis busy, as if
// another process had taken it after freePorts closed its listener: the
// start is retried once with a fresh port.
func TestRedis_PortRace(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = busy.Close() }()
	calls := 0
	reservePorts = func(n int) ([]int, error) {
		calls++
		if calls == 1 {
			return []int{busy.Addr().(*net.TCPAddr).Port}, nil
		}
		return freePorts(n)
	}
	defer func() { reservePorts = freePorts }()

	r := StartRedis(t, RedisOptions{})
	assert.Equal(t, 2, calls)
	assert.NotEqual(t, busy.Addr().String(), r.Addr())
	reply, err := do(t, r.Addr(), "PING")
	require.NoError(t, err)
	assert.Equal(t, "+PONG", reply)
}

// TestMissingBinary checks that a server not found in PATH skips the test
// (QUORUMLOCK_REQUIRE_SERVERS unset); the fatal variant would fail this
// package's run, so it is not exercised here.
func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(RequireServersEnv, "")
	for name, start := range map[string]func(testing.TB){
		"redis":     func(tb testing.TB) { StartRedis(tb, RedisOptions{}) },
		"zookeeper": func(tb testing.TB) { StartZooKeeper(tb, ZKOptions{}) },
		"ensemble":  func(tb testing.TB) { StartEnsemble(tb, 3, ZKOptions{}) },
	} {
		var sub *testing.T
		t.Run(name, func(t *testing.T) {
			sub = t
			start(t)
			t.Error("start returned without a server binary")
		})
		assert.True(t, sub.Skipped(), name)
	}
}
