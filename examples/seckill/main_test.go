package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/testserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun_SellsExactlyTheTickets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		sold int
	}{
		{nil, "SUMMARY tickets=5 sold=5 buyers=20 oversold=0", 5}, // 3 nodes
		{[]string{"-nodes", "1"}, "SUMMARY tickets=5 sold=5 buyers=20 oversold=0", 5},
		{[]string{"-nodes", "5", "-buyers", "12", "-tickets", "7"}, "SUMMARY tickets=7 sold=7 buyers=12 oversold=0", 7},
		{[]string{"-buyers", "3", "-tickets", "10"}, "SUMMARY tickets=10 sold=3 buyers=3 oversold=0", 3},
		{[]string{"-buyers", "4", "-tickets", "0", "-nodes", "2"}, "SUMMARY tickets=0 sold=0 buyers=4 oversold=0", 0},
	} {
		name := strings.Join(tc.args, " ")
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(tc.args, &out))
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			assert.Equal(t, tc.want, lines[len(lines)-1])
			assert.Equal(t, tc.sold, strings.Count(out.String(), "bought ticket"))
			// Nothing but one line per buyer, in token order, and the summary.
			var last uint64
			for _, l := range lines[:len(lines)-1] {
				assert.Regexp(t, `^buyer \d+ token=\d+ (bought ticket \d+|sold out)$`, l)
				assert.Greater(t, tokenOf(l), last, l)
				last = tokenOf(l)
			}
			var buyers int
			_, err := fmt.Sscanf(tc.want, "SUMMARY tickets=%d sold=%d buyers=%d", new(int), new(int), &buyers)
			require.NoError(t, err)
			assert.Len(t, lines, buyers+1)
		})
	}
}

// TestRun_Backends runs the same program over the adapters, against real
// servers: only the constructor of the buyers' Lockers differs.
func TestRun_Backends(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		srv := testserver.StartRedis(t, testserver.RedisOptions{AppendFsyncAlways: true})
		var out bytes.Buffer
		require.NoError(t, run([]string{"-backend", "redis", "-redis", srv.Addr(), "-buyers", "12", "-tickets", "4"}, &out))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		assert.Equal(t, "SUMMARY tickets=4 sold=4 buyers=12 oversold=0", lines[len(lines)-1])
	})
	t.Run("zookeeper", func(t *testing.T) {
		srv := testserver.StartZooKeeper(t, testserver.ZKOptions{})
		var out bytes.Buffer
		require.NoError(t, run([]string{"-backend", "zookeeper", "-zk", srv.Addr(), "-buyers", "12", "-tickets", "4"}, &out))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		assert.Equal(t, "SUMMARY tickets=4 sold=4 buyers=12 oversold=0", lines[len(lines)-1])
	})
}

// TestRun_Migrate runs the sale while the buyers move between backends
// through the runbook's stages (migrate.go): every ticket is sold once,
// no two buyers hold the lock at once, and the fenced counter never sees a
// token go backwards (it would fail the run).
func TestRun_Migrate(t *testing.T) {
	redisSrv := testserver.StartRedis(t, testserver.RedisOptions{AppendFsyncAlways: true})
	// A one-member ensemble: a quorum's zxids carry its epoch (2^32 up),
	// which ZooKeeper as the store moved from needs (adapters/migrate's
	// DESIGN.md); a standalone server's start at 0.
	zkSrv := testserver.StartEnsemble(t, 1, testserver.ZKOptions{})
	for _, move := range []string{"redis:embedded", "zookeeper:embedded", "embedded:redis"} {
		t.Run(move, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run([]string{"-migrate", move, "-redis", redisSrv.Addr(), "-zk", strings.Join(zkSrv.Servers(), ","),
				"-buyers", "6", "-tickets", "20"}, &out))
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			assert.Equal(t, "SUMMARY tickets=20 sold=20 buyers=6 oversold=0", lines[len(lines)-1])
			for _, kind := range []string{"(old)", "(dual)", "(new)"} {
				assert.Contains(t, out.String(), kind, "a stage of every kind ran")
			}
			var last uint64
			for _, l := range lines {
				if strings.HasPrefix(l, "buyer ") {
					assert.Greater(t, tokenOf(l), last, "tokens increase across the move: %s", l)
					last = tokenOf(l)
				}
			}
		})
	}
}

func TestRun_RejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-buyers", "0"}, {"-tickets", "-1"}, {"-backend", "etcd"}, {"-timeout", "0s"}, {"extra"},
		{"-nodes", "0"}, {"-nodes", "8"},
		{"-migrate", "redis"}, {"-migrate", "redis:redis"}, {"-migrate", "redis:etcd"}, {"-migrate", ":embedded"},
	} {
		assert.Error(t, run(args, &bytes.Buffer{}), "%q", args)
	}
}

func TestStore_RejectsStaleTokens(t *testing.T) {
	s := &store{left: 2}
	_, ok, err := s.sale(10)
	require.NoError(t, err)
	assert.True(t, ok)
	_, _, err = s.sale(9)
	assert.ErrorIs(t, err, errFenced)
	assert.Equal(t, 0, s.oversold(2))
}
