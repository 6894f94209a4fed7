package transport_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

func TestMux_GarbageFirstByteClosedAndCounted(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo})
	for i, b := range []byte{0x00, 0x16 /* a TLS ClientHello */, 'G' /* HTTP */, 0xff} {
		c := rawDial(t, srv.Addr())
		_, err := c.Write([]byte{b, 1, 2, 3})
		require.NoError(t, err)
		expectClosedByPeer(t, c)
		waitFor(t, "bad first byte counted", func() bool { return srv.Stats().BadFirstBytes == uint64(i+1) })
	}
	st := srv.Stats()
	assert.EqualValues(t, 0, st.RPCConnsAccepted)
	assert.EqualValues(t, 0, st.RaftConnsAccepted)
	assert.EqualValues(t, 0, st.RequestsServed)
}

// A client that connects and sends nothing is closed at the handshake
// deadline, and other clients are served meanwhile.
func TestMux_SlowLorisClosedAtDeadline(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, HandshakeTimeout: 300 * time.Millisecond})
	cli := newTransport(t, transport.Config{})

	silent := make([]net.Conn, 0, 3)
	for range 3 {
		silent = append(silent, rawDial(t, srv.Addr()))
	}
	waitFor(t, "handshakes pending", func() bool { return srv.Stats().PendingHandshakes == 3 })

	// Served while the silent connections are still pending.
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("still served"))
	require.NoError(t, err)
	assert.Equal(t, "still served", string(got))

	for _, c := range silent {
		expectClosedByPeer(t, c)
	}
	waitFor(t, "timeouts counted", func() bool { return srv.Stats().HandshakeTimeouts == 3 })
	assert.EqualValues(t, 0, srv.Stats().PendingHandshakes)
}

// Over MaxPendingHandshakes, new connections are closed at once (not left
// in the backlog); once a slot frees, clients are served again.
func TestMux_PendingHandshakeBound(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, MaxPendingHandshakes: 2, HandshakeTimeout: waitLimit * 2})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})

	s1 := rawDial(t, srv.Addr())
	_ = rawDial(t, srv.Addr())
	waitFor(t, "two pending handshakes", func() bool { return srv.Stats().PendingHandshakes == 2 })

	third := rawDial(t, srv.Addr())
	expectClosedByPeer(t, third)
	waitFor(t, "rejection counted", func() bool { return srv.Stats().HandshakesRejected == 1 })

	// The client side of a pending handshake gives up: its slot frees.
	require.NoError(t, s1.Close())
	waitFor(t, "slot freed", func() bool { return srv.Stats().PendingHandshakes == 1 })
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("ok"))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(got))
}

func TestMux_MaxConns(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, MaxConns: 1})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("ok"))
	require.NoError(t, err)

	extra := rawDial(t, srv.Addr())
	expectClosedByPeer(t, extra)
	waitFor(t, "rejection counted", func() bool { return srv.Stats().ConnsRejected == 1 })
	assert.EqualValues(t, 1, srv.Stats().ActiveConns)
}

// An RPC frame whose length exceeds the cap: the connection is closed and
// counted, before the body is read or allocated.
func TestMux_OversizeFrameClosedAndCounted(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo})
	c := rawDial(t, srv.Addr())

	hdr := make([]byte, 1+4)
	hdr[0] = transport.MuxRPC
	binary.BigEndian.PutUint32(hdr[1:], transport.DefaultMaxFrameSize+1)
	_, err := c.Write(hdr)
	require.NoError(t, err)
	expectClosedByPeer(t, c)
	waitFor(t, "oversize frame counted", func() bool { return srv.Stats().FramesRejected == 1 })
	assert.EqualValues(t, 0, srv.Stats().RequestsServed)
}

// A frame of exactly the cap is fine: the cap is inclusive.
func TestMux_FrameAtCapServed(t *testing.T) {
	const maxFrame = 4 << 10
	srv := newTransport(t, transport.Config{Handler: echo, MaxFrameSize: maxFrame})
	c := rawDial(t, srv.Addr())
	body := make([]byte, 8+maxFrame-transport.FrameOverhead)
	_, err := c.Write(append([]byte{transport.MuxRPC}, transport.EncodeFrame(transport.KindRequest, 7, body)...))
	require.NoError(t, err)

	kind, id, reply := readRawFrame(t, c)
	assert.Equal(t, transport.KindResponse, kind)
	assert.EqualValues(t, 7, id)
	assert.Len(t, reply, maxFrame-transport.FrameOverhead)
}

func TestMux_ProtocolErrors(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"unknown kind", transport.EncodeFrame(99, 1, nil)},
		{"response sent to server", transport.EncodeFrame(transport.KindResponse, 1, nil)},
		{"request without timeout", transport.EncodeFrame(transport.KindRequest, 1, []byte{1, 2})},
		{"length below header", []byte{0, 0, 0, 3, 1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTransport(t, transport.Config{Handler: echo})
			c := rawDial(t, srv.Addr())
			_, err := c.Write(append([]byte{transport.MuxRPC}, tc.bytes...))
			require.NoError(t, err)
			expectClosedByPeer(t, c)
			waitFor(t, "protocol error counted", func() bool { return srv.Stats().ProtocolErrors == 1 })
		})
	}
}

// A peer that starts a frame and stalls is cut after IOTimeout.
func TestMux_StalledFrameCut(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, IOTimeout: 200 * time.Millisecond})
	c := rawDial(t, srv.Addr())
	frame := transport.EncodeFrame(transport.KindRequest, 1, make([]byte, 100))
	_, err := c.Write(append([]byte{transport.MuxRPC}, frame[:20]...))
	require.NoError(t, err)
	expectClosedByPeer(t, c)
	waitFor(t, "timeout counted", func() bool { return srv.Stats().IOTimeouts == 1 })
	assert.EqualValues(t, 0, srv.Stats().RequestsServed)
}

// A peer that stops reading stalls the server's writer: after IOTimeout
// the connection is closed and counted.
func TestMux_StalledWriteCut(t *testing.T) {
	const maxFrame = 1 << 20
	reply := make([]byte, maxFrame-transport.FrameOverhead)
	srv := newTransport(t, transport.Config{MaxFrameSize: maxFrame, IOTimeout: 200 * time.Millisecond,
		Handler: transport.HandlerFunc(func(context.Context, []byte) ([]byte, error) { return reply, nil })})
	c := rawDial(t, srv.Addr())
	// Far more reply bytes than loopback socket buffers hold; never read.
	req := []byte{transport.MuxRPC}
	for id := range uint64(32) {
		req = append(req, transport.EncodeFrame(transport.KindRequest, id+1, make([]byte, 8))...)
	}
	_, err := c.Write(req)
	require.NoError(t, err)
	waitFor(t, "write timeout counted", func() bool { return srv.Stats().IOTimeouts == 1 })
	expectClosedByPeer(t, c)
	waitFor(t, "connection closed", func() bool { return srv.Stats().ActiveConns == 0 })
}

func readRawFrame(t testing.TB, c net.Conn) (kind byte, id uint64, body []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitLimit)))
	r := bufio.NewReader(c)
	hdr := make([]byte, 13)
	_, err := io.ReadFull(r, hdr)
	require.NoError(t, err)
	n := binary.BigEndian.Uint32(hdr)
	body = make([]byte, n-9)
	_, err = io.ReadFull(r, body)
	require.NoError(t, err)
	return hdr[4], binary.BigEndian.Uint64(hdr[5:]), body
}

// Over MaxConnsPerIP from one address, new connections from it are closed
// at once and counted; connections from another address are served, and
// a slot freed by a close is usable again.
func TestMux_MaxConnsPerIP(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo, MaxConnsPerIP: 2, HandshakeTimeout: waitLimit * 2})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})

	first := rawDialFrom(t, otherHost, srv.Addr())
	_ = rawDialFrom(t, otherHost, srv.Addr())
	waitFor(t, "two pending handshakes", func() bool { return srv.Stats().PendingHandshakes == 2 })
	for i := range 3 {
		over := rawDialFrom(t, otherHost, srv.Addr())
		expectClosedByPeer(t, over)
		waitFor(t, "rejection counted", func() bool { return srv.Stats().ConnsRejectedPerIP == uint64(i+1) })
	}

	// Another address (the client's, 127.0.0.1) is not affected.
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("other host"))
	require.NoError(t, err)
	assert.Equal(t, "other host", string(got))

	// A close frees the address's slot.
	require.NoError(t, first.Close())
	waitFor(t, "slot freed", func() bool { return srv.Stats().PendingHandshakes == 1 })
	_ = rawDialFrom(t, otherHost, srv.Addr())
	waitFor(t, "accepted again", func() bool { return srv.Stats().PendingHandshakes == 2 })
	st := srv.Stats()
	assert.EqualValues(t, 3, st.ConnsRejectedPerIP)
	assert.EqualValues(t, 0, st.ConnsRejected)
	assert.EqualValues(t, 0, st.HandshakesRejected)
}

// A protocol byte is counted as soon as it is read, even if the connection
// fails right after (here: clearing the handshake deadline fails, as it
// does on a pipe whose peer has gone; found by FuzzServerConn).
func TestMux_ProtocolByteCountedOnArrival(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       byte
		counted func(transport.Stats) uint64
	}{
		{"RPC", transport.MuxRPC, func(st transport.Stats) uint64 { return st.RPCConnsAccepted }},
		{"Raft", transport.MuxRaft, func(st transport.Stats) uint64 { return st.RaftConnsAccepted }},
		{"unknown", 0x00, func(st transport.Stats) uint64 { return st.BadFirstBytes }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := newTransport(t, transport.Config{Listener: clearFailsListener{ln}, Handler: echo})
			c := rawDial(t, srv.Addr())
			_, err = c.Write([]byte{tc.b})
			require.NoError(t, err)
			expectClosedByPeer(t, c)
			waitFor(t, "connection let go", func() bool { return srv.Stats().ActiveConns == 0 })
			assert.EqualValues(t, 1, tc.counted(srv.Stats()))
		})
	}
}

// clearFailsListener's connections fail to clear their deadline.
type clearFailsListener struct{ net.Listener }

func (l clearFailsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return clearFailsConn{c}, nil
}

type clearFailsConn struct{ net.Conn }

func (c clearFailsConn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		return errors.New("peer gone")
	}
	return c.Conn.SetDeadline(t)
}
