package node_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/internal/testcluster"
	"github.com/quorumlock/quorumlock/node"
)

// TestCluster_RestartWithTermButNoLog: a founding member whose DataDir
// holds a term but no log yet (it died after the leader's first heartbeat,
// before the first entries or snapshot arrived) restarts with an empty
// configuration. With an identity it accepted Raft only from servers it
// had dialled, and it dials nobody, so it never started again; it now also
// accepts its founding Peers (a joiner joins again).
func TestCluster_RestartWithTermButNoLog(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-identity", true: "cluster-key"}[keyed], func(t *testing.T) {
			key := clusterKey(t)
			root := t.TempDir()
			c := testcluster.Start(t, testcluster.Options{Size: 3, Durable: true, Peers: true,
				Edit: func(i int, cfg *node.Config) {
					cfg.DataDir = filepath.Join(root, cfg.ID)
					cfg.StartTimeout = 10 * time.Second
					if keyed {
						cfg.ClusterKey = key
					}
				}})
			f := c.Follower()
			term := node.RaftOf(c.Node(f)).CurrentTerm()
			dataDir := filepath.Join(root, c.ID(f))
			require.NoError(t, c.Stop(f, (*node.Node).Abort))
			require.NoError(t, os.RemoveAll(dataDir))
			require.NoError(t, os.MkdirAll(dataDir, 0o700))
			s, err := raftboltdb.NewBoltStore(filepath.Join(dataDir, "raft.db"))
			require.NoError(t, err)
			require.NoError(t, s.SetUint64([]byte("CurrentTerm"), term))
			require.NoError(t, s.Close())
			c.Restart(f) // keyed: times out, the leader's streams are refused
		})
	}
}
