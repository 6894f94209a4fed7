// Command election is the leader-election demo: N replicas of a service,
// each with its own embedded quorumlock node, campaign for leadership of
// one election; every replica observes who leads. The demo kills the
// leader replica — its whole node, the way a crashed process dies — and
// another replica takes over once the dead one's session expires; the
// killed replica then restarts on its data directory and campaigns again.
//
//	go run ./examples/election                    # 3 replicas, 3 kills, session TTL 2s
//	go run ./examples/election -replicas 5 -kills 5
//	go run ./examples/election -kills 40 -ttl 2s  # the failover figure (README.md)
//
// The nodes form a Raft cluster inside this process, talking over real TCP
// on loopback, each durable in a temporary directory removed at the end.
// The output shows every term won (replica, token, value), every state
// each replica's observer delivers (token, value, holder, skipped), every
// kill, and the failover: the time from the kill to the first observer on
// a surviving replica seeing the new term, and to the new leader's
// Campaign returning. With -raft alternate (the default) the killed leader
// is also the Raft leader on odd kills and a Raft follower on even ones.
//
// The last line is always
//
//	SUMMARY replicas=<N> ttl=<TTL> kills=<K> terms=<T> failover_median=<D> failover_p99=<D> tokens_increasing=<bool> single_leader=<bool>
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "election:", err)
		os.Exit(1)
	}
}

type config struct {
	replicas, kills int
	ttl             time.Duration
	raft            string
	timeout         time.Duration
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("election", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.replicas, "replicas", 3, "replicas, each with its own embedded node of one cluster (3-7)")
	fs.IntVar(&c.kills, "kills", 3, "times the leader replica is killed (0-1000)")
	fs.DurationVar(&c.ttl, "ttl", 2*time.Second, "session TTL: how long a killed leader's term outlives it")
	fs.StringVar(&c.raft, "raft", "alternate", "where the Raft leader is at each kill: alternate (odd kills on the leader replica's node, even ones elsewhere), leader, follower or any (as it happens)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.replicas < 3 || c.replicas > 7:
		return c, fmt.Errorf("-replicas %d: want 3 to 7 (a cluster that survives a kill)", c.replicas)
	case c.kills < 0 || c.kills > 1000:
		return c, fmt.Errorf("-kills %d: want 0 to 1000", c.kills)
	case c.ttl < node.MinSessionTTL || c.ttl > node.MaxSessionTTL:
		return c, fmt.Errorf("-ttl %v: want %v to %v", c.ttl, node.MinSessionTTL, node.MaxSessionTTL)
	case c.raft != "alternate" && c.raft != "leader" && c.raft != "follower" && c.raft != "any":
		return c, fmt.Errorf("-raft %q: want alternate, leader, follower or any", c.raft)
	case c.timeout <= 0:
		return c, fmt.Errorf("-timeout %v: want > 0", c.timeout)
	}
	return c, nil
}

func run(args []string, out io.Writer) (err error) {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()

	h := newHistory(out)
	h.logf("election %q: %d replicas, each an embedded node of one Raft cluster on loopback; session TTL %v",
		election, cfg.replicas, cfg.ttl)
	c, err := startCluster(ctx, cfg.replicas, cfg.ttl)
	if err != nil {
		return err
	}
	d := &demo{cfg: cfg, c: c, h: h, replicas: make([]*replica, cfg.replicas)}
	defer d.stop()
	for i := range cfg.replicas {
		if err := d.startReplica(ctx, i); err != nil {
			return err
		}
	}
	var kills []failover
	for k := range cfg.kills {
		f, err := d.killLeader(ctx, k)
		if err != nil {
			return fmt.Errorf("kill %d: %w", k+1, err)
		}
		kills = append(kills, f)
	}
	if err := d.settle(ctx); err != nil {
		return err
	}
	if err := d.stopCandidates(ctx); err != nil {
		return err
	}
	d.stop()
	return d.report(kills)
}

// demo is the running demonstration: the cluster, the replicas (nil while
// dead) and what they saw.
type demo struct {
	cfg      config
	c        *cluster
	h        *history
	replicas []*replica
	stopped  bool
}

func (d *demo) startReplica(ctx context.Context, i int) error {
	r, err := startReplica(ctx, i, d.c.node(i), d.h)
	if err != nil {
		return err
	}
	d.replicas[i] = r
	return nil
}

// live lists the IDs of the running replicas.
func (d *demo) live() []string {
	var ids []string
	for _, r := range d.replicas {
		if r != nil {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// settle waits until a term is won and every live replica's observer
// shows it.
func (d *demo) settle(ctx context.Context) error {
	live := d.live()
	return d.h.wait(ctx, "every replica to observe the leader", func() bool { return d.h.settled(live) })
}

// stopCandidates stops every candidate, the leader last (it resigns),
// and waits until every observer shows the empty seat.
func (d *demo) stopCandidates(ctx context.Context) error {
	leader, _ := d.h.holder()
	for _, r := range d.replicas {
		if r != nil && r.id != leader {
			r.candidate.stop()
		}
	}
	d.h.logf("the end: the candidates stopped, %s resigns", leader)
	d.replicas[d.index(leader)].candidate.stop()
	live := d.live()
	return d.h.wait(ctx, "every replica to observe the empty seat", func() bool { return d.h.vacant(live) })
}

// stop stops the replicas (resigning a live term), then the cluster.
// Idempotent.
func (d *demo) stop() {
	if d.stopped {
		return
	}
	d.stopped = true
	for _, r := range d.replicas {
		if r != nil {
			r.stop()
		}
	}
	d.c.close()
}

// failover is one kill and what followed it.
type failover struct {
	replica    string        // the leader replica killed
	token      uint64        // its term's token
	raftLeader bool          // its node was the Raft leader
	observed   time.Duration // kill → a survivor's observer shows a newer term
	elected    time.Duration // kill → the new leader's Campaign returned
	// raftElections is how far the Raft term moved from the kill to the
	// failover: 0 if the Raft leader survived, usually 1 if it was killed.
	raftElections uint64
}

// killLeader steers the Raft leadership (-raft), kills the leader
// replica's node, times the failover, and restarts the killed replica.
func (d *demo) killLeader(ctx context.Context, k int) (failover, error) {
	if err := d.steer(ctx, d.wantRaftLeader(k)); err != nil {
		return failover{}, err
	}
	leader, token := d.h.holder()
	i := d.index(leader)
	f := failover{replica: leader, token: token, raftLeader: d.c.raftLeader() == i}
	role := "a Raft follower"
	if f.raftLeader {
		role = "also the Raft leader"
	}
	d.h.logf("kill %d: %s (leader, token %d; its node %s is %s)", k+1, leader, token, nodeID(i), role)
	term := d.c.raftTerm()
	killed := time.Now()
	d.c.kill(i)
	d.replicas[i].stop()
	d.replicas[i] = nil

	var won, seen time.Time
	err := d.h.wait(ctx, "a new leader, observed", func() bool {
		won, seen = d.h.after(killed, token, leader)
		return !won.IsZero() && !seen.IsZero()
	})
	if err != nil {
		return f, err
	}
	f.elected, f.observed = won.Sub(killed), seen.Sub(killed)
	f.raftElections = d.c.raftTerm() - term
	d.h.logf("failover %d: kill → observed %v, kill → elected %v (Raft terms meanwhile: %d)",
		k+1, round(f.observed), round(f.elected), f.raftElections)

	if err := d.c.restart(ctx, i); err != nil {
		return f, err
	}
	d.h.logf("restart %s (node %s)", leader, nodeID(i))
	return f, d.startReplica(ctx, i)
}

// index is the index of the replica named id.
func (d *demo) index(id string) int {
	for i := range d.replicas {
		if replicaID(i) == id {
			return i
		}
	}
	return -1
}

// wantRaftLeader says whether kill k should find the Raft leader on the
// leader replica's node: yes, no, or -raft any's "as it happens" (nil).
func (d *demo) wantRaftLeader(k int) *bool {
	var want bool
	switch d.cfg.raft {
	case "any":
		return nil
	case "alternate":
		want = k%2 == 0
	case "leader":
		want = true
	}
	return &want
}

// steer waits until the cluster is quiet (a term won, every replica
// observing it), then brings the Raft leader onto the leader replica's
// node (want) or off it (!want). Off: a leadership transfer from that
// node. On: Raft picks a transfer's target itself, so instead the leader
// replica resigns, and the term passes to the next candidate in line,
// until it reaches the Raft leader's replica (at most one round of the
// queue). It gives up after a few tries: the kill is then reported with
// the role the node had. After a transfer it paces half a TTL, so that
// the new Raft leader's session timers (armed at a full TTL at its
// election) are reset by keep-alives again, as they are in a steady
// cluster.
func (d *demo) steer(ctx context.Context, want *bool) error {
	transferred := false
	for try := 0; ; try++ {
		if err := d.settle(ctx); err != nil {
			return err
		}
		leader, err := d.raftLeader(ctx)
		if err != nil {
			return err
		}
		holder, token := d.h.holder()
		i := d.index(holder)
		if want == nil || (leader == i) == *want || try == 2*len(d.replicas) {
			break
		}
		if !*want {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = d.c.node(leader).TransferLeadership(tctx)
			cancel()
			if err != nil && !errors.Is(err, node.ErrNotLeader) {
				d.h.logf("leadership transfer: %v", err)
			}
			transferred = true
			continue
		}
		if err := d.resign(ctx, holder, token); err != nil {
			return err
		}
	}
	if !transferred {
		return nil
	}
	select { // a pace, not a wait for state: see above
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d.cfg.ttl / 2):
		return d.settle(ctx)
	}
}

// resign has replica's term of token resign (its Campaign loop runs
// again, behind the other candidates) and waits for the next term.
func (d *demo) resign(ctx context.Context, replica string, token uint64) error {
	t := d.h.term(replica, token)
	if t == nil {
		return nil // it ended meanwhile
	}
	d.h.logf("%s resigns (token %d)", replica, token)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := t.Release(rctx)
	cancel()
	if err != nil && !errors.Is(err, lock.ErrNotHeld) {
		return fmt.Errorf("%s resign: %w", replica, err)
	}
	return d.h.wait(ctx, "the next term", func() bool {
		_, tok := d.h.holderLocked()
		return tok > token
	})
}

// raftLeader waits until the live nodes agree on a Raft leader and
// returns it.
func (d *demo) raftLeader(ctx context.Context) (int, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if i := d.c.raftLeader(); i >= 0 && d.agree(nodeID(i)) {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("waiting for a Raft leader: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// agree reports whether every live node knows id as the Raft leader.
func (d *demo) agree(id string) bool {
	for i := range d.replicas {
		if n := d.c.node(i); n != nil {
			if l, _ := n.Leader(); l != id {
				return false
			}
		}
	}
	return true
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
