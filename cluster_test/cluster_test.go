package clustertest

import (
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/node"
)

const sessionTTL = testcluster.SessionTTL

// cluster is n durable nodes (internal/testcluster) over loopback TCP
// behind a faultNet, which the harness's Kill isolates a node in and its
// Restart reconnects it in. Node i has ID "n<i+1>"; a dead node is nil
// (Node) until restarted.
type cluster struct {
	*testcluster.Cluster
	net *faultNet
}

// newCluster starts n nodes: n1 founds the cluster, the others join it.
// Each option edits every node's Config before it starts.
func newCluster(t *testing.T, n int, opts ...func(*node.Config)) *cluster {
	t.Helper()
	f := newFaultNet()
	c := testcluster.Start(t, testcluster.Options{Size: n, Durable: true, Net: f, Edit: func(_ int, cfg *node.Config) {
		cfg.StartTimeout = 20 * time.Second
		for _, opt := range opts {
			opt(cfg)
		}
	}})
	return &cluster{Cluster: c, net: f}
}
