// Command seckill is the ticket-sale demo: N buyers race for M tickets under
// one distributed lock. Each buyer is its own lock client (its own session);
// the ticket counter is a fenced resource that accepts a sale only with a
// fencing token at least as large as the last one it accepted.
//
//	go run ./examples/seckill                 # 20 buyers, 5 tickets, 3-node cluster
//	go run ./examples/seckill -nodes 1        # one embedded node
//	go run ./examples/seckill -buyers 100 -tickets 30
//	go run ./examples/seckill -backend redis -redis 127.0.0.1:6379
//	go run ./examples/seckill -backend zookeeper -zk 127.0.0.1:2181
//	go run ./examples/seckill -migrate redis:embedded -tickets 90
//
// By default the lock service is a 3-node Raft cluster inside this
// process, its nodes talking over real TCP on loopback; buyers are spread
// over the nodes round-robin, so most of them lock through a follower.
// With -backend redis or zookeeper the same code locks through that server;
// only the constructor of each buyer's lock.Locker differs (see newBuyers).
//
// The last line is always
//
//	SUMMARY tickets=<T> sold=<S> buyers=<B> oversold=<O>
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "seckill:", err)
		os.Exit(1)
	}
}

type config struct {
	buyers, tickets, nodes int
	backend                string
	redis                  string
	zk                     string
	timeout                time.Duration
	migrate                string // "from:to" backends, or "" for none
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("seckill", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.buyers, "buyers", 20, "number of concurrent buyers (1-10000)")
	fs.IntVar(&c.tickets, "tickets", 5, "number of tickets for sale (0-1000000)")
	fs.IntVar(&c.nodes, "nodes", 3, "embedded nodes: 1 (a single node) to 7 (a cluster on loopback)")
	fs.StringVar(&c.backend, "backend", "embedded", "lock backend: embedded (in-process Raft nodes), redis or zookeeper")
	fs.StringVar(&c.redis, "redis", "127.0.0.1:6379", "Redis server host:port (-backend redis)")
	fs.StringVar(&c.zk, "zk", "127.0.0.1:2181", "ZooKeeper servers host:port,... (-backend zookeeper)")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "give up after this long")
	fs.StringVar(&c.migrate, "migrate", "", "run the sale while moving the buyers from one backend to another, e.g. redis:embedded (see migrate.go)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.buyers < 1 || c.buyers > 10000:
		return c, fmt.Errorf("-buyers %d: want 1 to 10000", c.buyers)
	case c.tickets < 0 || c.tickets > 1000000:
		return c, fmt.Errorf("-tickets %d: want 0 to 1000000", c.tickets)
	case c.nodes < 1 || c.nodes > 7:
		return c, fmt.Errorf("-nodes %d: want 1 to 7", c.nodes)
	case c.timeout <= 0:
		return c, fmt.Errorf("-timeout %v: want > 0", c.timeout)
	case !validBackend(c.backend):
		return c, fmt.Errorf("-backend %q: want embedded, redis or zookeeper", c.backend)
	case c.migrate != "":
		from, to, ok := strings.Cut(c.migrate, ":")
		if !ok || !validBackend(from) || !validBackend(to) || from == to {
			return c, fmt.Errorf("-migrate %q: want from:to, two different backends of embedded, redis and zookeeper", c.migrate)
		}
	}
	return c, nil
}

func validBackend(b string) bool { return b == "embedded" || b == "redis" || b == "zookeeper" }

// store is the protected resource: a ticket counter that rejects reads and
// writes carrying a fencing token older than the newest it has accepted,
// and that counts overlapping sales (two holders at once) as oversold.
type store struct {
	mu        sync.Mutex
	left      int
	sold      int
	overlaps  int
	lastToken uint64
	busy      bool
}

var errFenced = errors.New("stale fencing token")

// fence admits token or rejects it as stale; s.mu held.
func (s *store) fence(token uint64) error {
	if token < s.lastToken {
		return fmt.Errorf("%w: %d < %d", errFenced, token, s.lastToken)
	}
	s.lastToken = token
	return nil
}

// sale is one holder's read-check-write of the counter. The short pause
// between the read and the write is the window in which, without the lock,
// buyers oversell.
func (s *store) sale(token uint64) (ticket int, ok bool, err error) {
	s.mu.Lock()
	if s.busy {
		s.overlaps++
	}
	s.busy = true
	err = s.fence(token)
	left := s.left
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}()
	if err != nil || left <= 0 {
		return 0, false, err
	}
	time.Sleep(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fence(token); err != nil {
		return 0, false, err
	}
	s.left = left - 1
	s.sold++
	return s.sold, true, nil
}

// oversold counts sales beyond the tickets and overlapping holders.
func (s *store) oversold(tickets int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(0, s.sold-tickets) + s.overlaps
}

func run(args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if cfg.migrate != "" {
		return runMigration(ctx, cfg, out)
	}

	buyers, stop, err := newBuyers(ctx, cfg)
	defer stop()
	if err != nil {
		return err
	}

	st := &store{left: cfg.tickets}
	lines := make([]string, cfg.buyers)
	var wg sync.WaitGroup
	errs := make(chan error, cfg.buyers)
	start := make(chan struct{})
	for i, buyer := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = buyer.Close() }()
			<-start
			var err error
			if lines[i], err = buy(ctx, st, buyer, i); err != nil {
				errs <- fmt.Errorf("buyer %02d: %w", i+1, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	var report strings.Builder
	report.WriteString(inTokenOrder(lines))
	fmt.Fprintf(&report, "SUMMARY tickets=%d sold=%d buyers=%d oversold=%d\n", cfg.tickets, st.sold, cfg.buyers, st.oversold(cfg.tickets))
	_, err = io.WriteString(out, report.String())
	return err
}

// buy is buyer i's one attempt: under the lock, a sale at the counter;
// its line says the token and what it got.
func buy(ctx context.Context, st *store, l lock.Locker, i int) (line string, err error) {
	err = lock.Do(ctx, l, "seckill/tickets", func(ctx context.Context) error {
		token, _ := lock.TokenFromContext(ctx)
		ticket, ok, err := st.sale(token)
		switch {
		case err != nil:
			return err
		case ok:
			line = fmt.Sprintf("buyer %02d token=%d bought ticket %d", i+1, token, ticket)
		default:
			line = fmt.Sprintf("buyer %02d token=%d sold out", i+1, token)
		}
		return nil
	}, lock.WithOwner(fmt.Sprintf("buyer-%02d", i+1)))
	return line, err
}

// inTokenOrder is lines, one per line, in grant order (by token): the
// order the sales happened.
func inTokenOrder(lines []string) string {
	lines = slices.Clone(lines)
	sort.SliceStable(lines, func(a, b int) bool { return tokenOf(lines[a]) < tokenOf(lines[b]) })
	return strings.Join(lines, "\n") + "\n"
}

// newBuyers makes one lock.Locker (one session) per buyer on the chosen
// backend; stop tears the backend down after the buyers closed theirs.
// Everything else in this program is backend-neutral.
func newBuyers(ctx context.Context, cfg config) ([]lock.Locker, func(), error) {
	newLocker, stopBackend, err := openBackend(ctx, cfg, cfg.backend)
	buyers := make([]lock.Locker, 0, cfg.buyers)
	stop := func() {
		for _, b := range buyers {
			_ = b.Close()
		}
		stopBackend()
	}
	if err != nil {
		return nil, stop, err
	}
	for range cfg.buyers {
		l, err := newLocker()
		if err != nil {
			return nil, stop, err
		}
		buyers = append(buyers, l)
	}
	return buyers, stop, nil
}

// openBackend returns a constructor of Lockers (one session each) on
// backend, and the function that stops the backend once they are closed.
// The only code that knows which backend is in use.
func openBackend(ctx context.Context, cfg config, backend string) (func() (lock.Locker, error), func(), error) {
	var newLocker func() (lock.Locker, error)
	var server string
	switch backend {
	case "redis":
		server = "redis at " + cfg.redis
		newLocker = func() (lock.Locker, error) { return redis.New(redis.Config{Addr: cfg.redis}) }
	case "zookeeper":
		server = "zookeeper at " + cfg.zk
		servers := strings.Split(cfg.zk, ",")
		newLocker = func() (lock.Locker, error) { return zookeeper.New(zookeeper.Config{Servers: servers}) }
	default:
		nodes, err := startNodes(cfg.nodes)
		stop := func() { closeNodes(nodes) }
		if err != nil {
			return nil, stop, err
		}
		next := 0 // buyers spread over the nodes round-robin
		return func() (lock.Locker, error) {
			n := nodes[next%len(nodes)]
			next++
			return n.NewLocker(ctx)
		}, stop, nil
	}
	// The adapters connect lazily or in the background: fail fast if the
	// server is not there.
	probe, err := newLocker()
	if err != nil {
		return nil, func() {}, err
	}
	defer func() { _ = probe.Close() }()
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := probe.Inspect(ictx, "seckill/tickets"); err != nil {
		return nil, func() {}, fmt.Errorf("%s: %w", server, err)
	}
	return newLocker, func() {}, nil
}

// startNodes starts one embedded node, or a cluster of size nodes over TCP
// on loopback: the first founds it, the others join it concurrently. On
// error it returns the nodes that started, for closeNodes.
func startNodes(size int) ([]*node.Node, error) {
	if size == 1 {
		n, err := node.New(node.Config{})
		if err != nil {
			return nil, err
		}
		return []*node.Node{n}, nil
	}
	first, err := node.New(node.Config{ID: "n1", Addr: "127.0.0.1:0", Peers: []node.Peer{{ID: "n1"}}})
	if err != nil {
		return nil, err
	}
	nodes := make([]*node.Node, size)
	nodes[0] = first
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := 1; i < size; i++ {
		wg.Go(func() {
			nodes[i], errs[i] = node.New(node.Config{ID: fmt.Sprintf("n%d", i+1), Addr: "127.0.0.1:0", Join: first.Addr()})
		})
	}
	wg.Wait()
	started := slices.DeleteFunc(nodes, func(n *node.Node) bool { return n == nil })
	return started, errors.Join(errs...)
}

// closeNodes stops the nodes. A graceful Close commits the end of the
// node's sessions, which needs a quorum: closed one by one, or all at once
// (racing), the last nodes of a cluster would wait for a quorum that is
// already gone. So every node but the leader leaves the cluster first,
// one at a time, shrinking the configuration; the leader, alone in it by
// then, closes last.
func closeNodes(nodes []*node.Node) {
	if len(nodes) == 0 {
		return
	}
	leaderID, _ := nodes[0].Leader()
	last := 0
	for i, n := range nodes {
		if n.Stats().ID == leaderID {
			last = i
		}
	}
	for i, n := range nodes {
		if i != last {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.Leave(ctx)
			cancel()
		}
	}
	_ = nodes[last].Close()
}

func tokenOf(line string) uint64 {
	var i int
	var tok uint64
	_, _ = fmt.Sscanf(line, "buyer %d token=%d", &i, &tok)
	return tok
}
