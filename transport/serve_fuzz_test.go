package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The bounds of the fuzzed server: small, so that inputs of a few hundred
// bytes reach them.
const (
	fuzzMaxFrame    = MinFrameSize
	fuzzMaxInFlight = 4
	fuzzBudget      = MinFrameSize // per connection and in all
)

// FuzzServerConn feeds whatever bytes a peer may send first on a server
// connection (protocol byte, frames, garbage, a truncated tail) to a real
// Transport, through its listener, handshake, mux, server loop and
// handlers. The server must never panic, and what it does must be what
// expectServe predicts from the bytes: every counter, every frame it sends
// back, the bytes it hands to Raft. Afterwards it holds no connection and
// no budget. Seeds live in testdata/fuzz/FuzzServerConn.
func FuzzServerConn(f *testing.F) {
	f.Add([]byte{muxRPC})
	f.Add(append([]byte{muxRPC}, encodeRequest(1, 0, []byte("hello"))...))
	f.Add(append([]byte{muxRaft}, "raft bytes"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		want := expectServe(data)
		slices.Sort(want.busy)
		got := serveOnce(t, data)

		assert.Equal(t, want.counters, got.counters, "counters")
		assert.Equal(t, want.raftBytes, got.raftBytes, "bytes handed to Raft")
		if want.closesItself {
			// The server closed the connection: frames queued before that
			// may or may not have left, but nothing else may come.
			for _, fr := range got.busy {
				assert.Contains(t, want.busy, fr, "busy answer to a request that was not refused")
			}
			assert.Empty(t, got.replies, "a reply although no handler was released before the close")
			return
		}
		assert.Equal(t, want.busy, got.busy, "busy answers")
		assert.Equal(t, want.replies, got.replies, "replies")
	})
}

// serveOutcome is what a server connection did with some bytes.
type serveOutcome struct {
	counters     Stats             // the connection's counters (only those expectServe predicts)
	busy         []uint64          // IDs answered busy, in order
	replies      map[uint64]string // replies by ID (the handler echoes)
	raftBytes    []byte            // what the Raft layer read
	closesItself bool              // the server closes the connection, rather than wait for more
	started      int               // handlers that run
}

// expectServe walks data as DESIGN.md's rules say a server treats it: the
// protocol byte, then frames (decoded by readFrame, which FuzzReadFrame
// checks on its own); requests are started while below the count and byte
// bounds, else answered busy; handlers run until the test releases them.
func expectServe(data []byte) serveOutcome {
	var out serveOutcome
	out.replies = map[uint64]string{}
	if len(data) == 0 {
		return out
	}
	switch data[0] {
	case muxRaft:
		out.counters.RaftConnsAccepted = 1
		out.raftBytes = bytes.Clone(data[1:])
		return out
	case muxRPC:
		out.counters.RPCConnsAccepted = 1
	default:
		out.counters.BadFirstBytes = 1
		out.closesItself = true
		return out
	}
	violation := func(tooLarge bool) serveOutcome {
		if tooLarge {
			out.counters.FramesRejected = 1
		} else {
			out.counters.ProtocolErrors = 1
		}
		out.closesItself = true
		out.replies = map[uint64]string{}
		return out
	}
	running, held := 0, 0 // handlers running (released only at the end) and their bytes
	br := bufio.NewReader(bytes.NewReader(data[1:]))
	for {
		fr, err := readFrame(br, fuzzMaxFrame)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The peer stops here; the server waits for more, and serves
			// what it started once the handlers are released.
			out.counters.RequestsServed = uint64(len(out.replies))
			return out
		case err != nil:
			return violation(errors.Is(err, ErrFrameTooLarge))
		}
		switch fr.kind {
		case kindRequest:
			_, payload, err := parseRequest(fr.body)
			if err != nil {
				return violation(false)
			}
			if _, dup := out.replies[fr.id]; dup {
				return violation(false)
			}
			switch {
			case running == fuzzMaxInFlight:
				out.counters.RequestsBusy++
				out.busy = append(out.busy, fr.id)
			case held+len(payload) > fuzzBudget:
				out.counters.RequestsOverBudget++
				out.busy = append(out.busy, fr.id)
			default:
				running++
				held += len(payload)
				out.started++
				out.replies[fr.id] = string(payload)
			}
		case kindCancel:
			if _, ok := out.replies[fr.id]; ok {
				delete(out.replies, fr.id) // its handler still runs, holding its slot and bytes
				out.counters.RequestsCanceled++
			}
		default:
			return violation(false)
		}
	}
}

// serveOnce sends data on a fresh connection to a fresh Transport and
// reports what the server did. Handlers hold every request until the
// server has read all of data, then echo it.
func serveOnce(t *testing.T, data []byte) serveOutcome {
	want := expectServe(data)
	ln := newPipeListener()
	var entered atomic.Int64
	release, stop := make(chan struct{}), make(chan struct{})
	tr, err := New(Config{
		Listener: ln,
		Handler: HandlerFunc(func(_ context.Context, p []byte) ([]byte, error) {
			entered.Add(1)
			select {
			case <-release:
				return p, nil
			case <-stop:
				return nil, errors.New("stopped")
			}
		}),
		MaxFrameSize: fuzzMaxFrame, MaxInFlightPerConn: fuzzMaxInFlight,
		MaxInFlightBytesPerConn: fuzzBudget, MaxInFlightBytes: fuzzBudget,
		// Safety nets only: the test ends every connection itself.
		HandshakeTimeout: time.Minute, IOTimeout: time.Minute, IdleTimeout: time.Minute,
	})
	require.NoError(t, err)
	layer := tr.Raft()
	defer func() {
		close(stop)
		_ = layer.Close()
		require.NoError(t, tr.Close())
		st := tr.Stats()
		assert.Zero(t, st.ActiveConns, "connections left")
		assert.Zero(t, st.InFlightBytes, "budget left")
		assert.Zero(t, st.PendingHandshakes, "handshakes left")
	}()

	c := ln.dial()
	defer func() { _ = c.Close() }()
	frames := make(chan frame, 4*len(data)+1)
	go func() {
		defer close(frames)
		br := bufio.NewReader(c)
		for {
			fr, err := readFrame(br, fuzzMaxFrame)
			if err != nil {
				return
			}
			frames <- fr
		}
	}()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = c.Write(data) // fails once the server closes: fine
	}()

	var out serveOutcome
	out.replies = map[uint64]string{}
	collect := func(fr frame) {
		switch fr.kind {
		case kindBusy:
			out.busy = append(out.busy, fr.id)
		case kindResponse:
			_, dup := out.replies[fr.id]
			assert.False(t, dup, "two replies to request %d", fr.id)
			out.replies[fr.id] = string(fr.body)
		default:
			t.Errorf("server sent frame kind %d", fr.kind)
		}
	}
	switch {
	case want.raftBytes != nil:
		rc := acceptWithin(t, layer)
		got := make([]byte, len(want.raftBytes))
		_, err := io.ReadFull(rc, got)
		require.NoError(t, err)
		out.raftBytes = got
		_ = rc.Close()
	case want.closesItself:
		for fr := range frames { // until the server closes
			collect(fr)
		}
	case want.counters.RPCConnsAccepted == 1:
		// Everything read and acted on: then release the handlers and
		// take exactly the answers they and the refusals owe.
		<-wrote
		eventually(t, "the server to act on every frame", func() bool {
			st := tr.Stats()
			return entered.Load() == int64(want.started) && st.RequestsBusy == want.counters.RequestsBusy &&
				st.RequestsOverBudget == want.counters.RequestsOverBudget &&
				st.RequestsCanceled == want.counters.RequestsCanceled
		})
		close(release)
		for range len(want.busy) + len(want.replies) {
			select {
			case fr, ok := <-frames:
				require.True(t, ok, "the server closed the connection")
				collect(fr)
			case <-time.After(10 * time.Second):
				t.Fatal("timed out waiting for the server's answers")
			}
		}
	}
	_ = c.Close()
	for fr := range frames {
		collect(fr) // nothing more is owed: anything here is extra
	}
	<-wrote
	eventually(t, "the server to let the connection go", func() bool { return tr.Stats().ActiveConns == 0 })
	st := tr.Stats()
	out.counters = Stats{
		BadFirstBytes: st.BadFirstBytes, RaftConnsAccepted: st.RaftConnsAccepted, RPCConnsAccepted: st.RPCConnsAccepted,
		RequestsServed: st.RequestsServed, RequestsBusy: st.RequestsBusy, RequestsOverBudget: st.RequestsOverBudget,
		RequestsCanceled: st.RequestsCanceled,
		FramesRejected:   st.FramesRejected, ProtocolErrors: st.ProtocolErrors,
	}
	assert.Zero(t, deathsOtherThanInput(st), "a connection closed for another reason: %+v", st)
	slices.Sort(out.busy)
	return out
}

// deathsOtherThanInput counts connections closed for reasons the bytes
// cannot cause here (bounds and deadlines the fuzzed server never reaches).
func deathsOtherThanInput(st Stats) uint64 {
	return st.ConnsRejected + st.ConnsRejectedPerIP + st.HandshakesRejected + st.HandshakeTimeouts +
		st.TLSFailures + st.RaftQueueTimeouts + st.IOTimeouts + st.IdleTimeouts
}

func acceptWithin(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	select {
	case a := <-ch:
		require.NoError(t, a.err)
		return a.c
	case <-time.After(10 * time.Second):
		t.Fatal("the Raft layer got no connection")
		return nil
	}
}

// eventually polls cond until it holds, failing after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !cond(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if i < 100 {
			runtime.Gosched()
		} else {
			runtimeYield()
		}
	}
}

// pipeListener is a net.Listener whose connections are in-memory pipes
// made by dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// dial returns the client end of a new connection the listener accepts.
func (l *pipeListener) dial() net.Conn {
	near, far := net.Pipe()
	l.conns <- far
	return near
}
