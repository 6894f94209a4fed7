package transport_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

// The stream layer on its own: Dial on one node reaches Accept on the other,
// bytes flow both ways, and closing the layer closes what it accepted.
func TestRaftLayer_DialAccept(t *testing.T) {
	a := newTransport(t, transport.Config{})
	b := newTransport(t, transport.Config{})
	la, lb := a.Raft(), b.Raft()
	defer func() { _ = la.Close() }()

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lb.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	out, err := la.Dial(raftAddr(b), waitLimit)
	require.NoError(t, err)
	in := recvWithin(t, accepted, "accepted raft conn")

	_, err = out.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(in, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	_, err = in.Write([]byte("pong"))
	require.NoError(t, err)
	_, err = io.ReadFull(out, buf)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(buf))
	assert.EqualValues(t, 1, b.Stats().RaftConnsAccepted)

	// Closing b's layer stops its Accept and closes the stream it accepted;
	// b's RPC side keeps working.
	require.NoError(t, lb.Close())
	_, err = lb.Accept()
	assert.ErrorIs(t, err, transport.ErrClosed)
	expectClosedByPeer(t, out)

	require.NoError(t, b.Close())
}

// Raft connections nobody accepts (Raft not started yet) wait at most the
// handshake deadline, then are closed and counted.
func TestRaftLayer_QueueTimeout(t *testing.T) {
	srv := newTransport(t, transport.Config{HandshakeTimeout: 500 * time.Millisecond})
	cli := newTransport(t, transport.Config{})
	c, err := cli.Raft().Dial(raftAddr(srv), waitLimit)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	expectClosedByPeer(t, c)
	waitFor(t, "queue timeout counted", func() bool { return srv.Stats().RaftQueueTimeouts == 1 })
}

// A new layer after the old one closed serves Raft again (a restarted Raft
// instance on the same port).
func TestRaftLayer_Reopen(t *testing.T) {
	srv := newTransport(t, transport.Config{})
	cli := newTransport(t, transport.Config{})
	require.NoError(t, srv.Raft().Close())

	l := srv.Raft()
	defer func() { _ = l.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := cli.Raft().Dial(raftAddr(srv), waitLimit)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	recvWithin(t, accepted, "accepted raft conn")
}

func TestRaftCluster(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "mutual TLS"}[secure], func(t *testing.T) {
			var ca *testCA
			if secure {
				ca = newCA(t, "cluster-ca")
			}
			c := newRaftCluster(t, 3, func(i int) transport.Config {
				if ca == nil {
					return transport.Config{}
				}
				return transport.Config{TLS: ca.tlsConfig(t, fmt.Sprintf("n%d", i))}
			})
			leader := c.waitLeader(t)

			f := leader.Apply([]byte("hello"), waitLimit)
			require.NoError(t, f.Error())
			assert.Equal(t, 1, f.Response())
			require.NoError(t, leader.Apply([]byte("world"), waitLimit).Error())

			for i, fsm := range c.fsms {
				waitFor(t, fmt.Sprintf("n%d to apply both entries", i), func() bool {
					return slices.Equal(fsm.applied(), []string{"hello", "world"})
				})
			}
			var raftConns uint64
			for _, tr := range c.trs {
				st := tr.Stats()
				raftConns += st.RaftConnsAccepted
				assert.Zero(t, st.TLSFailures)
				assert.Zero(t, st.BadFirstBytes)
				assert.Zero(t, st.HandshakeTimeouts)
			}
			// The leader may never be dialled (followers only answer it).
			assert.GreaterOrEqual(t, raftConns, uint64(2), "the leader reached both followers over the stream layer")
		})
	}
}

type raftCluster struct {
	trs   []*transport.Transport
	rafts []*raft.Raft
	fsms  []*listFSM
}

func newRaftCluster(t *testing.T, n int, cfg func(i int) transport.Config) *raftCluster {
	t.Helper()
	c := &raftCluster{}
	var servers []raft.Server
	for i := range n {
		tr := newTransport(t, cfg(i))
		c.trs = append(c.trs, tr)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: raftAddr(tr)})
	}
	for i, tr := range c.trs {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		// Timeouts a loaded 2-core machine keeps: with 200 ms ones, a
		// starved leader stepped down mid-test and its Apply failed with
		// "leadership lost while committing log" (an ambiguous outcome the
		// test cannot retry without risking a double apply).
		conf.HeartbeatTimeout = time.Second
		conf.ElectionTimeout = time.Second
		conf.LeaderLeaseTimeout = 500 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = hclog.NewNullLogger()

		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  tr.Raft(),
			MaxPool: 3,
			Timeout: 2 * time.Second,
			Logger:  hclog.NewNullLogger(),
		})
		store := raft.NewInmemStore()
		fsm := &listFSM{}
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), nt)
		require.NoError(t, err)
		// Registered after the transport's cleanup, so it runs first: Raft
		// shuts down (closing its stream layer) before the Transport closes.
		t.Cleanup(func() { _ = r.Shutdown().Error() })
		require.NoError(t, r.BootstrapCluster(raft.Configuration{Servers: servers}).Error())
		c.rafts = append(c.rafts, r)
		c.fsms = append(c.fsms, fsm)
	}
	return c
}

func (c *raftCluster) waitLeader(t *testing.T) *raft.Raft {
	t.Helper()
	var leader *raft.Raft
	waitFor(t, "a leader", func() bool {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	return leader
}

// listFSM records applied commands; Apply returns how many it has.
type listFSM struct {
	mu  sync.Mutex
	log []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, string(l.Data))
	return len(f.log)
}

func (f *listFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnapshot{data: []byte(fmt.Sprint(len(f.log)))}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	_, err := io.Copy(io.Discard, rc)
	return err
}

type listSnapshot struct{ data []byte }

func (s *listSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := io.Copy(sink, bytes.NewReader(s.data)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnapshot) Release() {}
