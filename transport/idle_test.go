package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

// An RPC connection that goes quiet is closed after IdleTimeout and
// counted: one that never sent a frame, and one that did and then
// stopped.
func TestServerConn_IdleConnectionClosed(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, IdleTimeout: 200 * time.Millisecond})

	silent := rawDial(t, srv.Addr())
	_, err := silent.Write([]byte{transport.MuxRPC})
	require.NoError(t, err)

	used := rawDial(t, srv.Addr())
	_, err = used.Write(append([]byte{transport.MuxRPC}, transport.EncodeFrame(transport.KindRequest, 1, []byte("\x00\x00\x00\x00\x00\x00\x00\x00once"))...))
	require.NoError(t, err)
	kind, id, body := readRawFrame(t, used)
	assert.Equal(t, transport.KindResponse, kind)
	assert.EqualValues(t, 1, id)
	assert.Equal(t, "once", string(body))

	expectClosedByPeer(t, silent)
	expectClosedByPeer(t, used)
	waitFor(t, "idle closes counted", func() bool { return srv.Stats().IdleTimeouts == 2 })
	st := srv.Stats()
	assert.EqualValues(t, 1, st.RequestsServed)
	assert.EqualValues(t, 0, st.ProtocolErrors)
	assert.EqualValues(t, 0, st.IOTimeouts)
}

// A connection whose request is still in its handler is not idle, however
// long the handler takes and although no frame moves meanwhile (a
// forwarded Acquire waiting for a lock): neither the server closes it nor
// the client retires it, and the call gets its reply.
func TestServerConn_NotIdleWhileHandlerRuns(t *testing.T) {
	const idle = 100 * time.Millisecond
	srv := newTransport(t, transport.Config{IdleTimeout: idle, Handler: transport.HandlerFunc(
		func(ctx context.Context, p []byte) ([]byte, error) {
			// The handler's own work: longer than both idle limits.
			timer := time.NewTimer(5 * idle)
			defer timer.Stop()
			select {
			case <-timer.C:
				return p, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})})
	cli := newTransport(t, transport.Config{IdleTimeout: idle, ConnsPerPeer: 1})

	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("slow"))
	require.NoError(t, err, "the connection was closed under a running request")
	assert.Equal(t, "slow", string(got))
	assert.EqualValues(t, 0, cli.Stats().ConnsLost)
	assert.EqualValues(t, 1, srv.Stats().RequestsServed)
}

// When the server closes an idle pooled connection, the client notices and
// its next call redials: the caller sees no error.
func TestCall_RedialsAfterServerIdleClose(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, IdleTimeout: 100 * time.Millisecond})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1}) // default IdleTimeout: never retires first

	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("one"))
	require.NoError(t, err)
	waitFor(t, "server to close the idle connection", func() bool { return srv.Stats().IdleTimeouts == 1 })
	waitFor(t, "client to drop it", func() bool { return cli.Stats().ClientConns == 0 })

	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("two"))
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))
	assert.EqualValues(t, 2, cli.Stats().Dials)
	assert.EqualValues(t, 0, cli.Stats().PendingCalls)
}

// The client retires a pooled connection quiet for IdleTimeout/2 itself,
// before a server with the same IdleTimeout would close it; that is not a
// lost connection, and the next call redials.
func TestCall_RetiresIdleConnection(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo}) // default IdleTimeout: never closes first
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1, IdleTimeout: 100 * time.Millisecond})

	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("one"))
	require.NoError(t, err)
	waitFor(t, "client to retire the connection", func() bool {
		st := cli.Stats()
		return st.ConnsRetired == 1 && st.ClientConns == 0
	})

	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("two"))
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))
	st := cli.Stats()
	assert.EqualValues(t, 2, st.Dials)
	assert.EqualValues(t, 0, st.ConnsLost)
	assert.EqualValues(t, 0, srv.Stats().IdleTimeouts)
}
