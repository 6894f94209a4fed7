package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Names of the backends and workloads the flags accept.
var (
	backendNames  = []string{"embedded1", "embedded3", "lockd3", "redis", "zookeeper", "zookeeper3", "etcd", "etcd3"}
	workloadNames = []string{"W1", "W2", "W3"}
)

// maxIdle bounds -idle: the node's default limits are raised to fit it
// (backend.go), and one Locker holds all of them.
const maxIdle = 1_000_000

// config is the parsed command line.
type config struct {
	backends  []string
	workloads []string
	duration  time.Duration // measured part of a cell
	warmup    time.Duration // unmeasured start of a cell
	failovers int           // failover probes on embedded3; 0: none
	idle      int           // idle locks held during the scale probe; 0: no probe
	redis     string
	zk        []string
	zk3       []string
	etcd      []string
	etcd3     []string
	lockd     string // lockd binary for lockd3; "": build it
	jsonPath  string
	svgPath   string
	cpuPath   string // CPU profile of the whole run
}

var errUsage = errors.New("bad usage")

// parseFlags parses and validates args. Usage goes to usage (flag's own
// -h output and errors).
func parseFlags(args []string, usage io.Writer) (config, error) {
	fs := flag.NewFlagSet("lockbench", flag.ContinueOnError)
	fs.SetOutput(usage)
	var c config
	var backends, workloads, zk, zk3, etcd, etcd3 string
	fs.StringVar(&backends, "backends", "embedded1,embedded3", "comma list of "+strings.Join(backendNames, ", "))
	fs.StringVar(&workloads, "workloads", "W1,W2,W3", "comma list of "+strings.Join(workloadNames, ", "))
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured time per cell")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before each cell")
	fs.IntVar(&c.failovers, "failovers", 0, "failover probes on embedded3 (leader killed, time to the next grant); 0: none")
	fs.IntVar(&c.idle, "idle", 0, "scale probe: W2 while this many idle locks are held; 0: none")
	fs.StringVar(&c.redis, "redis", "127.0.0.1:6379", "Redis server host:port (backend redis)")
	fs.StringVar(&zk, "zk", "127.0.0.1:2181", "ZooKeeper servers host:port,... (backend zookeeper)")
	fs.StringVar(&zk3, "zk3", "127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184", "the servers of a ZooKeeper ensemble host:port,... (backend zookeeper3)")
	fs.StringVar(&etcd, "etcd", "127.0.0.1:2379", "etcd server host:port (backend etcd)")
	fs.StringVar(&etcd3, "etcd3", "127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679", "the members of an etcd cluster host:port,... (backend etcd3)")
	fs.StringVar(&c.lockd, "lockd", "", "lockd binary for backend lockd3 (default: build examples/lockd)")
	fs.StringVar(&c.jsonPath, "json", "", "write every result to this JSON file")
	fs.StringVar(&c.svgPath, "svg", "", "write a chart of the results to this SVG file")
	fs.StringVar(&c.cpuPath, "cpuprofile", "", "write a CPU profile of the whole run (this process: the embedded nodes and every client) to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.backends = splitList(backends)
	c.workloads = splitList(workloads)
	c.zk = splitList(zk)
	c.zk3 = splitList(zk3)
	c.etcd = splitList(etcd)
	c.etcd3 = splitList(etcd3)
	bad := func(format string, a ...any) (config, error) {
		return c, fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected arguments %q", fs.Args())
	case len(c.backends) == 0:
		return bad("-backends is empty")
	case c.duration <= 0:
		return bad("-duration %v: want > 0", c.duration)
	case c.warmup < 0:
		return bad("-warmup %v: want >= 0", c.warmup)
	case c.failovers < 0 || c.failovers > 1000:
		return bad("-failovers %d: want 0 to 1000", c.failovers)
	case c.idle < 0 || c.idle > maxIdle:
		return bad("-idle %d: want 0 to %d", c.idle, maxIdle)
	case len(c.workloads) == 0 && c.failovers == 0 && c.idle == 0:
		return bad("nothing to run: -workloads is empty and neither -failovers nor -idle is set")
	}
	for _, b := range c.backends {
		if !slices.Contains(backendNames, b) {
			return bad("-backends: unknown backend %q (want %s)", b, strings.Join(backendNames, ", "))
		}
	}
	for _, w := range c.workloads {
		if !slices.Contains(workloadNames, w) {
			return bad("-workloads: unknown workload %q (want %s)", w, strings.Join(workloadNames, ", "))
		}
	}
	if hasDup(c.backends) || hasDup(c.workloads) {
		return bad("-backends and -workloads name each entry once")
	}
	return c, nil
}

// splitList splits a comma list, dropping blanks around and between items.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func hasDup(s []string) bool {
	seen := make(map[string]bool, len(s))
	for _, v := range s {
		if seen[v] {
			return true
		}
		seen[v] = true
	}
	return false
}
