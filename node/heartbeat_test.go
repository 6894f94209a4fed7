package node

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHeartbeatGuard_QuiesceFencesHeartbeats: quiesce waits for a
// heartbeat that is being handled, and no heartbeat reaches Raft after it
// (hashicorp/raft's fast path runs outside its main loop and outlived a
// Shutdown, then wrote to a closed store and panicked).
func TestHeartbeatGuard_QuiesceFencesHeartbeats(t *testing.T) {
	srv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	require.NoError(t, err)
	defer func() { _ = srv.Close() }()
	cli, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	require.NoError(t, err)
	defer func() { _ = cli.Close() }()

	g := &heartbeatGuard{NetworkTransport: srv}
	entered, release := make(chan struct{}, 2), make(chan struct{})
	g.SetHeartbeatHandler(func(rpc raft.RPC) {
		entered <- struct{}{}
		<-release
		rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
	})
	heartbeat := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(cli.LocalAddr())}, Term: 1}
			done <- cli.AppendEntries("n1", srv.LocalAddr(), req, &raft.AppendEntriesResponse{})
		}()
		return done
	}

	first := heartbeat()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat never reached the handler")
	}
	quiesced := make(chan struct{})
	go func() { g.quiesce(); close(quiesced) }()
	select {
	case <-quiesced:
		t.Fatal("quiesce returned while a heartbeat was being handled")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-quiesced:
	case <-time.After(10 * time.Second):
		t.Fatal("quiesce did not return after the heartbeat ended")
	}
	require.NoError(t, <-first)

	err = <-heartbeat()
	require.Error(t, err, "a heartbeat after quiesce must be refused")
	assert.Contains(t, err.Error(), raft.ErrRaftShutdown.Error())
	assert.Empty(t, entered, "a heartbeat after quiesce reached Raft")
}
