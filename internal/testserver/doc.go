// Package testserver starts real servers — redis-server and Apache
// ZooKeeper — as child processes for tests: each on free 127.0.0.1 ports,
// with a temporary data directory, waited on until it serves, and killed by
// t.Cleanup. It is imported by tests only.
//
// Usage:
//
//	func TestSomething(t *testing.T) {
//		r := testserver.StartRedis(t, testserver.RedisOptions{})
//		client := redis.NewClient(&redis.Options{Addr: r.Addr()})
//		...
//		r.Kill()    // crash (SIGKILL)
//		r.Restart() // same port and data directory
//	}
//
//	z := testserver.StartZooKeeper(t, testserver.ZKOptions{ExtendedTypes: true})
//	e := testserver.StartEnsemble(t, 3, testserver.ZKOptions{})
//	e.Member(e.Leader(t)).Kill() // the other two elect a new leader
//	e.WaitQuorum(t)
//	e.RestartAll()               // after losing the majority
//
// # Missing servers
//
// If a server is not installed the test is skipped with a message naming
// the Debian package to install: redis-server for Redis; zookeeper (and a
// Java runtime, default-jre-headless) for ZooKeeper. With the environment
// variable QUORUMLOCK_REQUIRE_SERVERS=1 (CI) a missing server fails the test
// instead. ZooKeeper is run from the Debian jars in /usr/share/java;
// QUORUMLOCK_ZK_CLASSPATH overrides the class path.
//
// # Processes
//
// Every server runs in its own process group and every signal goes to the
// group; the cleanup sends SIGKILL (which also ends a paused, stopped
// process; SIGCONT follows for good measure) and waits for the exit, so nothing outlives the test even when it panics. On
// Linux the child also gets SIGKILL if the test binary itself dies (go test
// -timeout). Kill is SIGKILL (a crash), Stop is SIGTERM (an orderly
// shutdown), Pause and Resume are SIGSTOP and SIGCONT (on Linux Pause
// returns once every thread of the server is stopped), and Restart starts the
// same command line again — same ports, same data directory — after Kill or
// Stop and waits until the server serves. A server's methods use the
// testing.TB it was started with; call them from that test (or its
// subtests while it runs). When the test failed, the cleanup logs the tail
// of the server's log.
//
// # Ports
//
// A free port is found by listening on 127.0.0.1:0 and closing the
// listener; another process can take the port before the server binds it.
// When the server reports "address already in use" at its first start, the
// start is retried once with fresh ports. Restart reuses the old ports and
// does not retry.
//
// # Readiness and timing
//
// Redis is ready when PING answers +PONG (at most 10 s); ZooKeeper when
// the four-letter word srvr reports a Mode (standalone, leader or follower;
// at most 60 s — the JVM starts slowly on a loaded two-core machine). On
// timeout the test fails with the server's log tail.
//
// ZooKeeper's tickTime defaults to 200 ms instead of the usual 2 s. The
// server clamps session timeouts to [2*tickTime, 20*tickTime] unless
// configured otherwise; here the minimum is 2*tickTime (400 ms by default)
// and the maximum is 60 s, so session-expiry tests can use short sessions.
// ZooKeeper runs with zookeeper.forceSync=no: a killed process loses
// nothing the kernel already has, so Kill and Restart keep every
// acknowledged write, but a machine crash would not.
package testserver
