package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/quorumlock/quorumlock/internal/history"
	"github.com/quorumlock/quorumlock/lock"
)

// TestElectionNemesis: six candidates on three nodes (odd ones with TTL
// terms, even ones with session terms) campaign on one election over and
// over, each term held a moment, proclaimed once and resigned, while an
// observer per node records its Observe streams; a seeded nemesis
// alternately splits the cluster 1-vs-2 (every other split isolating the
// node of the term's holder for longer than a session TTL, the holder
// working on meanwhile) and kills the Raft leader (and restarts it), at
// least twice each. Splits come first: after a kill the seat is often
// held for seconds by a claim of the killed node's session (README.md). The history is checked with
// history.CheckElection (README.md, "Elections"): never two live terms,
// the old leader's Done closed before the next one is elected, tokens
// increasing, observers never going back and showing only real terms.
// After the final heal a campaign must win within 20 s, and every observer
// and every node's Leader must show its term, then the empty seat after
// its resign.
func TestElectionNemesis(t *testing.T) {
	t.Parallel()
	seed := nemesisSeed(t)
	logs := newNodeLog(t)
	c := newCluster(t, 3, logs.edit)
	c.net.seed(seed)
	c.WaitProtocol(5)
	rng := newRand(seed)
	el := newElectLoad(c)
	keepElectionOnFailure(t, el.rec)
	stopCandidates, stopObservers := el.start(6, seed)
	t.Cleanup(stopObservers)
	t.Cleanup(stopCandidates) // cleanups run last in, first out: the candidates stop first

	nem := &electNemesis{t: t, c: c, load: el, rng: rng}
	end := time.Now().Add(soak(t))
	for step := 0; step < 4 || time.Now().Before(end); step++ {
		// The nemesis's pace, not a wait for state: terms change meanwhile.
		sleep(t.Context(), time.Duration(500+rng.IntN(1000))*time.Millisecond)
		if step%2 == 0 {
			nem.split()
		} else {
			nem.kill()
		}
	}
	c.net.heal()
	stopCandidates()
	el.settle(t)
	stopObservers()

	h := el.rec.History()
	res := history.CheckElection(h, 0)
	won, unknown := 0, 0
	for _, p := range h.Campaigns {
		switch p.Outcome {
		case history.OK:
			won++
		case history.Unknown, history.Pending:
			unknown++
		}
	}
	t.Logf("%d kills, %d partitions (%d of the holder's node); %d campaigns: %d won, %d without an answer; %d states observed",
		nem.kills, nem.splits, nem.holderSplits, len(h.Campaigns), won, unknown, len(h.Sightings))
	assert.Greater(t, won, 1, "terms won besides the probe")
	assert.True(t, res.OK(), "election history: %s", res)
}

// electNemesis is TestElectionNemesis's (and TestSemaphoreNemesis's)
// nemesis; it runs on the test goroutine (kill and restart may Fatal).
type electNemesis struct {
	t    *testing.T
	c    *cluster
	load holderLoad
	rng  *rand.Rand

	kills, splits, holderSplits int
}

// kill kills the Raft leader, keeps it dead 0.2-1 s, restarts it.
func (n *electNemesis) kill() {
	li := n.c.Leader()
	n.c.Kill(li)
	n.kills++
	n.t.Logf("killed the Raft leader n%d", li+1)
	sleep(n.t.Context(), time.Duration(200+n.rng.IntN(800))*time.Millisecond) // the node stays dead a while
	n.c.Restart(li)
}

// holderLoad is the load a nemesis splits a holder's node off from: where
// a holder is, and telling its holders their node is cut off.
type holderLoad interface {
	// holderNode waits up to d for a node where a lease (a term) is held
	// and returns it, -1 if there was none.
	holderNode(d time.Duration) int
	// setCut marks node i cut off (or no longer).
	setCut(i int, on bool)
}

// split cuts one node off for 0.5-2 s, or, every other split, the node of
// a term's holder for longer than a session TTL: its term must end there
// before the majority elects anyone. The holder works on meanwhile
// (holderLoad.setCut).
func (n *electNemesis) split() {
	minority, why := n.rng.IntN(n.c.Size()), "random"
	d := time.Duration(500+n.rng.IntN(1500)) * time.Millisecond
	if n.splits%2 == 0 {
		if h := n.load.holderNode(3 * time.Second); h >= 0 {
			minority, why = h, "the holder's node"
			d = sessionTTL + time.Duration(500+n.rng.IntN(1000))*time.Millisecond
			n.holderSplits++
		}
	}
	var majority []int
	for i := range n.c.Size() {
		if i != minority {
			majority = append(majority, i)
		}
	}
	n.load.setCut(minority, true)
	n.c.net.partition([]int{minority}, majority)
	n.splits++
	n.t.Logf("partition %s | %s (%s) for %v", nodeList([]int{minority}), nodeList(majority), why, d)
	sleep(n.t.Context(), d) // the split lasts
	n.c.net.heal()
	n.load.setCut(minority, false)
}

// settle checks liveness and convergence once the nemesis and the
// candidates stopped: a campaign through a follower wins within 20 s;
// every observer and every node's Leader then show its term; after its
// resign they show the empty seat. A failure fails t without stopping it:
// the history is checked all the same.
func (el *electLoad) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c := el.c
	at := (c.Leader() + 1) % c.Size()
	l, ok := el.locker(ctx, at)
	if !assert.True(t, ok, "a Locker on n%d within 20 s after the heal", at+1) {
		return
	}
	defer func() { _ = l.Close() }()
	start := time.Now()
	held, err := el.rec.Campaign(ctx, 100, l.(lock.Elector), electionName, "probe")
	if !assert.NoError(t, err, "liveness: a campaign through n%d wins within 20 s after the heal", at+1) {
		return
	}
	t.Logf("after the heal a campaign through n%d won in %v (token %d)", at+1, time.Since(start).Round(time.Millisecond), held.Term().Token())
	el.converge(t, held.Term().Token(), "probe")
	assert.True(t, held.Look(), "the probe's term outlives the convergence")
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if assert.NoError(t, held.Resign(rctx)) {
		el.converge(t, 0, "")
	}
}

// converge waits up to 20 s until every observer has an open stream whose
// last state shows token and value (0: the empty seat), and every node's
// Leader answers it.
func (el *electLoad) converge(t *testing.T, token uint64, value string) {
	t.Helper()
	shows := func(info lock.LeaderInfo) bool { return info.Token == token && info.Value == value }
	var streaming []bool
	var latest []lock.LeaderInfo
	assert.Eventually(t, func() bool {
		streaming, latest = el.observed()
		for o := range latest {
			if !streaming[o] || !shows(latest[o]) {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "every observer shows token %d %q (open streams %v, last states %+v)", token, value, streaming, latest)
	for i := range el.c.Size() {
		var got lock.LeaderInfo
		var err error
		assert.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			got, err = el.rec.Leader(ctx, 10+i, el.c.Node(i).Elector(), electionName)
			if token == 0 {
				return errors.Is(err, lock.ErrNoLeader)
			}
			return err == nil && shows(got)
		}, 20*time.Second, 10*time.Millisecond, "n%d's Leader shows token %d %q (last answer %+v, %v)", i+1, token, value, got, err)
	}
}

// keepElectionOnFailure writes rec's history as JSON to a fresh directory
// under os.TempDir() if t failed, and names it (replayable with
// history.CheckElection).
func keepElectionOnFailure(t *testing.T, rec *history.ElectionRecorder) {
	keepOnFailure(t, "election", "history.CheckElection", func() any { return rec.History() })
}

// keepOnFailure writes history() as JSON to a fresh directory under
// os.TempDir() if t failed, and names it and the check it replays with.
func keepOnFailure(t *testing.T, what, check string, history func() any) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "quorumlock-"+what+"-")
		if err != nil {
			t.Logf("%s history: %v", what, err)
			return
		}
		b, err := json.MarshalIndent(history(), "", " ")
		if err == nil {
			path := filepath.Join(dir, what+".json")
			err = os.WriteFile(path, b, 0o644)
			t.Logf("%s history kept in %s (replayable with %s)", what, path, check)
		}
		if err != nil {
			t.Logf("%s history: %v", what, err)
		}
	})
}
