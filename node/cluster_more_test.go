package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/lock"
)

// listeners opens n loopback listeners: their addresses are known before
// the founders start (Peers needs them), with no window for another process
// to take the port.
func listeners(t *testing.T, n int) ([]net.Listener, []string) {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() }) // harmless after the node closed it
		lns = append(lns, l)
		addrs = append(addrs, l.Addr().String())
	}
	return lns, addrs
}

// startFounders starts the founding members of a Peers cluster
// concurrently (each New waits for a quorum).
func startFounders(t *testing.T, cfgs []Config) ([]*Node, []error) {
	t.Helper()
	nodes, errs := make([]*Node, len(cfgs)), make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { nodes[i], errs[i] = New(cfg) })
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil {
				wg.Go(func() { _ = n.Abort() })
			}
		}
		wg.Wait()
	})
	return nodes, errs
}

func peersConfigs(ids []string, lns []net.Listener, tlsFor func(i int) *tls.Config) []Config {
	var peers []Peer
	for i, id := range ids {
		peers = append(peers, Peer{ID: id, Addr: lns[i].Addr().String()})
	}
	var cfgs []Config
	for i, id := range ids {
		cfg := Config{ID: id, Listener: lns[i], Peers: peers, SessionTTL: 2 * time.Second, StartTimeout: 20 * time.Second}
		if tlsFor != nil {
			cfg.TLS = tlsFor(i)
		}
		cfgs = append(cfgs, cfg)
	}
	return cfgs
}

func TestCluster_PeersBootstrap(t *testing.T) {
	ctx := testCtx(t)
	ids := []string{"a", "b", "c"}
	lns, _ := listeners(t, 3)
	nodes, errs := startFounders(t, peersConfigs(ids, lns, nil))
	for i, err := range errs {
		require.NoError(t, err, ids[i])
	}
	members, err := nodes[2].Members()
	require.NoError(t, err)
	require.Len(t, members, 3)
	leaders := 0
	for _, m := range members {
		assert.True(t, m.Voter)
		if m.Leader {
			leaders++
		}
	}
	assert.Equal(t, 1, leaders)
	l, err := nodes[0].Acquire(ctx, "x")
	require.NoError(t, err)
	_, err = nodes[1].TryAcquire(ctx, "x")
	assert.ErrorIs(t, err, lock.ErrHeld)
	st := nodes[1].Stats()
	assert.Equal(t, "b", st.ID)
	assert.NotEmpty(t, st.LeaderID)
	assert.GreaterOrEqual(t, st.AppliedIndex, l.Token())
}

func TestCluster_TLS(t *testing.T) {
	ctx := testCtx(t)
	ca := newTestCA(t)
	other := newTestCA(t)
	ids := []string{"a", "b", "c"}
	lns, _ := listeners(t, 4)
	nodes, errs := startFounders(t, peersConfigs(ids, lns[:3], func(int) *tls.Config { return ca.config(t) }))
	for i, err := range errs {
		require.NoError(t, err, ids[i])
	}
	l, err := nodes[1].Acquire(ctx, "tls")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	// A node with a certificate from another CA can neither join nor speak
	// Raft: New fails, and the cluster's configuration is unchanged.
	_, err = New(Config{ID: "rogue", Listener: lns[3], Join: nodes[0].Addr(), TLS: other.config(t), StartTimeout: 2 * time.Second})
	assert.Error(t, err)
	members, err := nodes[0].Members()
	require.NoError(t, err)
	assert.Len(t, members, 3)

	// Nor can a node without TLS.
	_, err = New(Config{ID: "plain", Addr: "127.0.0.1:0", Join: nodes[0].Addr(), StartTimeout: 2 * time.Second})
	assert.Error(t, err)
}

func TestCluster_NonVoterAndRemove(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	nv, err := New(Config{ID: "nv", Addr: "127.0.0.1:0", Join: tc.nodes[2].Addr(), NonVoter: true, SessionTTL: 2 * time.Second})
	require.NoError(t, err)
	tc.nodes = append(tc.nodes, nv)
	tc.waitMembers(4)
	members, err := nv.Members()
	require.NoError(t, err)
	for _, m := range members {
		assert.Equal(t, m.ID != "nv", m.Voter, m.ID)
	}
	l, err := nv.Acquire(ctx, "from-nonvoter")
	require.NoError(t, err)
	require.NoError(t, l.Release(ctx))

	require.NoError(t, nv.Leave(ctx))
	tc.nodes[3] = nil
	tc.waitMembers(3)
	require.NoError(t, tc.nodes[0].RemoveServer(ctx, "n3"))
	_ = tc.nodes[2].Abort()
	tc.nodes[2] = nil
	tc.waitMembers(2)
	_, err = tc.nodes[1].Acquire(ctx, "after-remove")
	assert.NoError(t, err, "two voters of two still have a quorum")
}

// TestCluster_GracefulCloseOfLeader: the leader hands leadership over and
// releases its sessions, so its locks are free at once, not after the
// session TTL (2 s here).
func TestCluster_GracefulCloseOfLeader(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	li, leader := tc.leader()
	_, err := leader.Acquire(ctx, "leader-held")
	require.NoError(t, err)
	require.NoError(t, leader.Close())
	tc.nodes[li] = nil
	survivor := tc.nodes[(li+1)%3]
	info, err := survivor.Inspect(ctx, "leader-held")
	require.NoError(t, err)
	assert.False(t, info.Held, "Close released the leader's session leases")
	_, err = survivor.TryAcquire(ctx, "leader-held")
	assert.NoError(t, err)
}

// TestCluster_IsolatedHolder: the node holding a lock is cut off from the
// majority (its cluster port closed; Raft keeps running). Its lease's Done
// must close before a waiter elsewhere is granted the lock.
func TestCluster_IsolatedHolder(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, false)
	li, _ := tc.leader()
	hi := (li + 1) % 3 // a follower holds
	wi := (li + 2) % 3
	held, err := tc.nodes[hi].Acquire(ctx, "isolated")
	require.NoError(t, err)

	type grant struct {
		lease             lock.Lease
		holderAlreadyDone bool
		err               error
	}
	got := make(chan grant, 1)
	go func() {
		l, err := tc.nodes[wi].Acquire(ctx, "isolated")
		got <- grant{lease: l, holderAlreadyDone: held.Err() != nil, err: err}
	}()
	require.Eventually(t, func() bool {
		info, err := tc.nodes[wi].Inspect(ctx, "isolated")
		return err == nil && info.Waiters == 1
	}, 10*time.Second, 5*time.Millisecond)

	cut := time.Now()
	require.NoError(t, tc.nodes[hi].trans.Close())
	g := <-got
	require.NoError(t, g.err)
	t.Logf("holder isolated to waiter granted: %v (session TTL 2 s)", time.Since(cut))
	assert.True(t, g.holderAlreadyDone, "the isolated holder's Done must close before the waiter is granted")
	assert.ErrorIs(t, held.Err(), lock.ErrLost)
	assert.Greater(t, g.lease.Token(), held.Token())
}

// TestCluster_SnapshotCatchUp: a follower that was down while the log was
// compacted catches up from a snapshot, and its restored state serves
// linearizable reads.
func TestCluster_SnapshotCatchUp(t *testing.T) {
	ctx := testCtx(t)
	tc := newTestCluster(t, 3, true)
	li, leader := tc.leader()
	lagging := (li + 1) % 3
	require.NoError(t, tc.nodes[lagging].Abort())
	tc.nodes[lagging] = nil
	var last lock.Lease
	for i := range 50 {
		l, err := leader.Acquire(ctx, fmt.Sprintf("k%d", i%5))
		require.NoError(t, err)
		if i < 45 {
			require.NoError(t, l.Release(ctx))
		}
		last = l
	}
	require.NoError(t, leader.raft.Snapshot().Error())
	// Compact the log so the lagging node cannot be caught up from it.
	reloadable := leader.raft.ReloadableConfig()
	reloadable.TrailingLogs = 1
	require.NoError(t, leader.raft.ReloadConfig(reloadable))
	require.NoError(t, leader.raft.Snapshot().Error())

	n, err := New(tc.cfgs[lagging])
	require.NoError(t, err)
	tc.nodes[lagging] = n
	info, err := n.Inspect(ctx, last.Name())
	require.NoError(t, err)
	assert.True(t, info.Held)
	assert.Equal(t, last.Token(), info.Token)
	assert.Equal(t, raft.Follower, n.raft.State())
	assert.NotZero(t, n.Stats().SnapshotRestores, "caught up from a snapshot")
}

// testCA issues certificates for loopback peers.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "quorumlock test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// config returns a mutual-TLS config with a fresh certificate for
// 127.0.0.1, usable for both serving and dialling.
func (ca *testCA) config(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}
