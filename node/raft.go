package node

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/quorumlock/quorumlock/transport"
)

// startRaft starts this node's Raft: its configuration, its stores, its
// transport, the founding configuration of a new cluster, then Raft itself.
func (n *Node) startRaft() error {
	rc := n.raftConfig()
	logs, stable, snaps, err := n.openStores(rc)
	if err != nil {
		return err
	}
	trans, err := n.openTransport(rc.Logger)
	if err != nil {
		return err
	}
	if err := n.bootstrap(rc, logs, stable, snaps, trans); err != nil {
		return err
	}
	if own, err := snaps.List(); err == nil && len(own) > 0 {
		n.bridge.ownRestore() // NewRaft restores one of them first: not an install
	}
	r, err := raft.NewRaft(rc, n.bridge, logs, stable, snaps, trans)
	n.bridge.preload(nil) // restored from it, or not: no longer needed
	if err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	n.raft, n.logs, n.snaps = r, logs, snaps
	close(n.started)
	return nil
}

// raftConfig is the Raft configuration of this node (the profiles are in
// DESIGN.md, "Raft profiles").
func (n *Node) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.Logger = newHCLog(n.log, n.chatter)
	t := n.cfg.timers()
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.heartbeat, t.election
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.leaderLease, t.commit
	// BatchApplyCh stays off: with it, a future still in the buffered apply
	// channel when Raft shuts down is never answered, and its caller hangs
	// in Error() forever (seen in cluster_test: Abort waited 9 minutes for
	// an RPC handler). The leader still group-commits every Apply that is
	// waiting to be received.
	rc.MaxAppendEntries = 256
	rc.ShutdownOnRemove = false
	if n.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	if n.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = n.cfg.SnapshotInterval
	}
	if n.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = n.cfg.TrailingLogs
	}
	return rc
}

// openTransport returns Raft's transport: in a cluster, the network
// transport over the cluster port (which also serves our RPCs, handleRPC);
// for a single node, an in-memory one.
func (n *Node) openTransport(logger hclog.Logger) (raft.Transport, error) {
	if !n.cfg.clustered() {
		addr, mem := raft.NewInmemTransport(raft.ServerAddress(n.cfg.ID))
		n.closers = append(n.closers, mem.Close)
		n.addr = string(addr)
		return mem, nil
	}
	tr, err := transport.New(transport.Config{
		Addr:          n.cfg.Addr,
		AdvertiseAddr: n.cfg.AdvertiseAddr,
		Listener:      n.cfg.Listener,
		Dial:          n.cfg.Dial,
		TLS:           n.cfg.TLS,
		ID:            n.cfg.ID,
		ClusterKey:    n.cfg.ClusterKey,
		VerifyPeer:    n.cfg.VerifyPeer,
		Handler:       transport.HandlerFunc(n.handleRPC),
		Logger:        n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: cluster listener: %w", err)
	}
	n.trans = tr
	n.closers = append(n.closers, tr.Close)
	n.addr = tr.Addr()
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &memberStream{StreamLayer: tr.Raft(), n: n},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
		// 1 turns hashicorp/raft's pipelined replication off. With the
		// default (2) its pipeline channels are unbuffered, and when the
		// response decoder stops (a follower answered Success=false or
		// a newer term) the next pipelined send can block forever:
		// replication to that follower stops and Shutdown hangs (found
		// by a cluster_test soak; node/DESIGN.md, "Raft profiles").
		MaxRPCsInFlight: 1,
	})
	g := &heartbeatGuard{NetworkTransport: nt}
	n.closers = append(n.closers, nt.Close)
	n.heartbeats = g
	return g, nil
}

// bootstrap records whether the stores hold state (a restart, which ignores
// Peers and Join) and, for a new node that founds a cluster, writes the
// founding configuration.
func (n *Node) bootstrap(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("node: read existing state: %w", err)
	}
	n.existing = existing
	if !existing && n.cfg.clustered() && len(n.cfg.Peers) == 0 && n.cfg.Join == "" {
		return fmt.Errorf("%w: a new cluster node needs Peers (found a cluster) or Join (enter one); only a restart on a DataDir with state needs neither", ErrInvalidConfig)
	}
	if !existing && n.cfg.Join == "" {
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, n.founders()); err != nil {
			return fmt.Errorf("node: bootstrap: %w", err)
		}
	}
	return nil
}

// founders is the configuration a new cluster starts with.
func (n *Node) founders() raft.Configuration {
	if len(n.cfg.Peers) == 0 {
		return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.addr)}}}
	}
	var c raft.Configuration
	for _, p := range n.cfg.Peers {
		addr := p.Addr
		if p.ID == n.cfg.ID && addr == "" {
			addr = n.addr
		}
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(addr)})
	}
	return c
}
