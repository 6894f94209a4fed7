package transport_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

// deaths sums every counter of a connection the server closed on its own.
func deaths(st transport.Stats) uint64 {
	return st.ConnsRejected + st.ConnsRejectedPerIP + st.HandshakesRejected + st.HandshakeTimeouts +
		st.TLSFailures + st.BadFirstBytes + st.RaftQueueTimeouts + st.FramesRejected +
		st.ProtocolErrors + st.IOTimeouts + st.IdleTimeouts
}

// garbage is n fixed pseudo-random bytes.
func garbage(n int) []byte {
	r := rand.New(rand.NewPCG(12, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func withMux(mux byte, rest ...byte) []byte { return append([]byte{mux}, rest...) }

// Hostile input on a real port kills the connection that carries it, and
// the server counts it; a client's connection that was already there keeps
// serving throughout: a call held in its handler across the attack
// completes, a new call on it is served, nothing else is counted.
func TestHostile_ConnectionDiesOthersServe(t *testing.T) {
	request := transport.EncodeFrame(transport.KindRequest, 1, make([]byte, 8+100))
	tests := []struct {
		name    string
		n       int    // hostile connections
		from    string // their source address; "" for 127.0.0.1
		send    []byte // what each sends before it goes silent
		cfg     func(*transport.Config)
		counted func(transport.Stats) uint64 // how their deaths show
		want    int                          // in counted, if not n (the rest in other counters)
	}{
		{name: "garbage bytes", n: 1, send: withMux(0x00, garbage(4<<10)...),
			counted: func(st transport.Stats) uint64 { return st.BadFirstBytes }},
		{name: "garbage after the RPC byte", n: 1, send: withMux(transport.MuxRPC, garbage(4<<10)...),
			counted: func(st transport.Stats) uint64 { return st.FramesRejected + st.ProtocolErrors }},
		{name: "an HTTP request", n: 1, send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			counted: func(st transport.Stats) uint64 { return st.BadFirstBytes }},
		{name: "wrong mux byte", n: 1, send: withMux('X', request...),
			counted: func(st transport.Stats) uint64 { return st.BadFirstBytes }},
		{name: "huge length prefix", n: 1, send: withMux(transport.MuxRPC, 0xff, 0xff, 0xff, 0xff),
			counted: func(st transport.Stats) uint64 { return st.FramesRejected }},
		{name: "length below the header", n: 1, send: withMux(transport.MuxRPC, binary.BigEndian.AppendUint32(nil, 3)...),
			counted: func(st transport.Stats) uint64 { return st.ProtocolErrors }},
		{name: "truncated frame then silence", n: 1, send: withMux(transport.MuxRPC, request[:20]...),
			counted: func(st transport.Stats) uint64 { return st.IOTimeouts }},
		{name: "RPC byte then silence", n: 3, send: []byte{transport.MuxRPC},
			counted: func(st transport.Stats) uint64 { return st.IdleTimeouts }},
		{name: "Raft byte and no Raft running", n: 1, send: []byte{transport.MuxRaft},
			counted: func(st transport.Stats) uint64 { return st.RaftQueueTimeouts }},
		{name: "silent connections", n: 20,
			counted: func(st transport.Stats) uint64 { return st.HandshakeTimeouts }},
		// The capacity cases need the admitted connections alive until
		// every one is dialled: with the 500 ms handshake timeout a
		// loaded machine freed slots before the last dial, and fewer
		// were refused than counted on.
		{name: "a flood from one address", n: 30, from: otherHost,
			cfg:     func(c *transport.Config) { c.MaxConnsPerIP = 10; c.HandshakeTimeout = 3 * time.Second },
			counted: func(st transport.Stats) uint64 { return st.ConnsRejectedPerIP }, want: 20},
		{name: "more silent connections than handshake slots", n: 30,
			cfg:     func(c *transport.Config) { c.MaxPendingHandshakes = 10; c.HandshakeTimeout = 3 * time.Second },
			counted: func(st transport.Stats) uint64 { return st.HandshakesRejected }, want: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlocker()
			cfg := transport.Config{Handler: b, HandshakeTimeout: 500 * time.Millisecond,
				IOTimeout: 500 * time.Millisecond, IdleTimeout: 500 * time.Millisecond}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			srv := newTransport(t, cfg)
			// Same IdleTimeout as the server, as the design asks.
			cli := newTransport(t, transport.Config{ConnsPerPeer: 1, IdleTimeout: cfg.IdleTimeout})
			held := make(chan error, 1)
			go func() {
				_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("held across the attack"))
				held <- err
			}()
			recvWithin(t, b.started, "held call")

			hostile := make([]net.Conn, tc.n)
			for i := range hostile {
				if tc.from != "" {
					hostile[i] = rawDialFrom(t, tc.from, srv.Addr())
				} else {
					hostile[i] = rawDial(t, srv.Addr())
				}
				if tc.send != nil {
					_, err := hostile[i].Write(tc.send)
					require.NoError(t, err)
				}
			}
			for _, c := range hostile {
				expectClosedByPeer(t, c)
			}
			want := tc.want
			if want == 0 {
				want = tc.n
			}
			waitFor(t, "every hostile connection counted", func() bool {
				st := srv.Stats()
				return tc.counted(st) == uint64(want) && deaths(st) == uint64(tc.n)
			})

			got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:after"))
			require.NoError(t, err)
			assert.Equal(t, "echo:after", string(got))
			close(b.release)
			require.NoError(t, recvWithin(t, held, "held call"))

			st := srv.Stats()
			assert.Equal(t, uint64(tc.n), deaths(st), "only the hostile connections died: %+v", st)
			assert.EqualValues(t, 2, st.RequestsServed)
			cs := cli.Stats()
			assert.EqualValues(t, 1, cs.Dials, "the client's connection survived")
			assert.EqualValues(t, 0, cs.ConnsLost)
		})
	}
}
