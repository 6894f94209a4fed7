package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFrame_RoundTrip(t *testing.T) {
	frames := []frame{
		{kind: kindRequest, id: 1, body: encodeRequestBody(3*time.Second, []byte("payload"))},
		{kind: kindResponse, id: 1<<64 - 1, body: []byte("reply")},
		{kind: kindError, id: 2, body: []byte("boom")},
		{kind: kindCancel, id: 3},
		{kind: kindBusy, id: 4},
		{kind: kindTooLarge, id: 5, body: []byte("too big")},
	}
	var stream []byte
	for _, f := range frames {
		stream = append(stream, encodeFrame(f.kind, f.id, f.body)...)
	}
	br := bufio.NewReader(bytes.NewReader(stream))
	for _, want := range frames {
		got, err := readFrame(br, DefaultMaxFrameSize)
		require.NoError(t, err)
		assert.Equal(t, want.kind, got.kind)
		assert.Equal(t, want.id, got.id)
		assert.True(t, bytes.Equal(want.body, got.body))
	}
	_, err := readFrame(br, DefaultMaxFrameSize)
	assert.ErrorIs(t, err, io.EOF)
}

func TestFrame_RequestBody(t *testing.T) {
	timeout, payload, err := parseRequest(encodeRequestBody(1500*time.Millisecond, []byte("x")))
	require.NoError(t, err)
	assert.Equal(t, 1500*time.Millisecond, timeout)
	assert.Equal(t, "x", string(payload))

	// The one-allocation encoder and the generic one agree.
	assert.Equal(t, encodeFrame(kindRequest, 9, encodeRequestBody(time.Second, []byte("p"))),
		encodeRequest(9, time.Second, []byte("p")))

	_, _, err = parseRequest([]byte{1, 2, 3})
	assert.ErrorIs(t, err, ErrProtocol)
	neg := make([]byte, 8)
	binary.BigEndian.PutUint64(neg, 1<<63)
	_, _, err = parseRequest(neg)
	assert.ErrorIs(t, err, ErrProtocol)
}

func TestReadFrame_Errors(t *testing.T) {
	hdr := func(n uint32, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, n)
		return append(b, rest...)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated header", hdr(9, kindCancel, 0, 0), io.ErrUnexpectedEOF},
		{"truncated body", append(hdr(12, kindResponse, 0, 0, 0, 0, 0, 0, 0, 1), 'a'), io.ErrUnexpectedEOF},
		{"length below header", hdr(8, kindCancel, 0, 0, 0, 0, 0, 0, 0), ErrProtocol},
		{"unknown kind", hdr(9, 0, 0, 0, 0, 0, 0, 0, 0, 1), ErrProtocol},
		{"over the cap", hdr(1025), ErrFrameTooLarge},
		{"huge length", hdr(0xffffffff), ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tc.in)), 1024)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

// FuzzReadFrame: the decoder never panics, never returns a frame over the
// cap, classifies every failure, and what it accepts re-encodes to exactly
// the bytes it consumed. Seeds live in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(encodeRequest(1, time.Second, []byte("hello")))
	f.Add(append(encodeFrame(kindResponse, 1, []byte("a")), encodeFrame(kindCancel, 2, nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxLen = 4 << 10
		br := bufio.NewReader(bytes.NewReader(data))
		off := 0
		for {
			fr, err := readFrame(br, maxLen)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					require.Equal(t, len(data), off, "clean EOF only between frames")
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrProtocol), errors.Is(err, ErrFrameTooLarge):
				default:
					t.Fatalf("unclassified error %v", err)
				}
				return
			}
			enc := encodeFrame(fr.kind, fr.id, fr.body)
			require.LessOrEqual(t, len(enc)-4, maxLen)
			require.LessOrEqual(t, off+len(enc), len(data))
			require.Equal(t, data[off:off+len(enc)], enc)
			off += len(enc)
			if fr.kind == kindRequest {
				timeout, payload, err := parseRequest(fr.body)
				if err != nil {
					require.ErrorIs(t, err, ErrProtocol)
					continue
				}
				require.GreaterOrEqual(t, timeout, time.Duration(0))
				require.Equal(t, enc, encodeRequest(fr.id, timeout, payload))
			}
		}
	})
}

// --- the connection machinery over net.Pipe --------------------------------

// pipePeer is the far end of a net.Pipe speaking frames by hand.
type pipePeer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (p *pipePeer) read() frame {
	p.t.Helper()
	require.NoError(p.t, p.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	f, err := readFrame(p.br, DefaultMaxFrameSize)
	require.NoError(p.t, err)
	return f
}

func (p *pipePeer) write(kind byte, id uint64, body []byte) {
	p.t.Helper()
	require.NoError(p.t, p.nc.SetWriteDeadline(time.Now().Add(10*time.Second)))
	_, err := p.nc.Write(encodeFrame(kind, id, body))
	require.NoError(p.t, err)
}

// expectClosed reads until the near end closes the pipe (a deadline
// error instead means it did not).
func (p *pipePeer) expectClosed() {
	p.t.Helper()
	// Fails with ErrClosedPipe if the near end is already closed: fine.
	_ = p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, p.nc)
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		p.t.Fatalf("pipe not closed by the near end: %v", err)
	}
}

func newPipeTransport(t *testing.T, cfg Config) (*Transport, net.Conn, *pipePeer) {
	t.Helper()
	tr, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	near, far := net.Pipe()
	t.Cleanup(func() { _ = far.Close() })
	return tr, near, &pipePeer{t: t, nc: far, br: bufio.NewReader(far)}
}

// A reply that arrives after its call gave up is dropped and counted; the
// connection stays usable.
func TestClientConn_LateResponseDropped(t *testing.T) {
	tr, near, peer := newPipeTransport(t, Config{})
	c := newClientConn(tr, newConn(near, near, nil), "pipe")
	require.NoError(t, tr.startClientConn(c))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.call(ctx, []byte("one"))
		errc <- err
	}()
	req := peer.read()
	require.Equal(t, kindRequest, req.kind)
	timeout, payload, err := parseRequest(req.body)
	require.NoError(t, err)
	assert.Zero(t, timeout, "no deadline, none propagated")
	assert.Equal(t, "one", string(payload))

	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	cf := peer.read()
	assert.Equal(t, kindCancel, cf.kind)
	assert.Equal(t, req.id, cf.id)

	peer.write(kindResponse, req.id, []byte("late"))
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().LateResponses != 1 {
		require.True(t, time.Now().Before(deadline), "late response not counted")
		runtimeYield()
	}

	// Still usable, and the deadline travels with the request.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	got := make(chan []byte, 1)
	go func() {
		r, err := c.call(ctx2, []byte("two"))
		if err == nil {
			got <- r
		}
		errc <- err
	}()
	req2 := peer.read()
	assert.NotEqual(t, req.id, req2.id)
	timeout, _, err = parseRequest(req2.body)
	require.NoError(t, err)
	assert.Greater(t, timeout, 50*time.Second)
	assert.LessOrEqual(t, timeout, time.Minute)
	peer.write(kindResponse, req2.id, []byte("two-reply"))
	require.NoError(t, <-errc)
	assert.Equal(t, "two-reply", string(<-got))

	// The peer hangs up: the next call fails with ErrConnLost.
	require.NoError(t, peer.nc.Close())
	go func() {
		_, err := c.call(context.Background(), []byte("three"))
		errc <- err
	}()
	assert.ErrorIs(t, <-errc, ErrConnLost)
}

// A call on a connection that was retired as idle sends nothing and
// returns errIdle, on which Call redials.
func TestClientConn_RetiredCallNotSent(t *testing.T) {
	tr, near, peer := newPipeTransport(t, Config{IdleTimeout: 40 * time.Millisecond})
	c := newClientConn(tr, newConn(near, near, nil), "pipe")
	require.NoError(t, tr.startClientConn(c))
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().ConnsRetired != 1 {
		require.True(t, time.Now().Before(deadline), "connection not retired")
		runtimeYield()
	}
	_, err := c.call(context.Background(), []byte("late"))
	require.ErrorIs(t, err, errIdle)
	_ = peer.nc.SetReadDeadline(time.Now().Add(10 * time.Second)) // fails once the near end closed: fine
	n, _ := io.Copy(io.Discard, peer.nc)
	assert.Zero(t, n, "nothing was sent")
	assert.EqualValues(t, 0, tr.Stats().ConnsLost)
}

// A client that reuses an in-flight request ID breaks the protocol.
func TestServerConn_DuplicateRequestID(t *testing.T) {
	release := make(chan struct{})
	tr, near, peer := newPipeTransport(t, Config{Handler: HandlerFunc(
		func(ctx context.Context, p []byte) ([]byte, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return p, nil
		})})
	defer close(release)
	require.True(t, tr.spawn(func() { tr.serveRPC(newConn(near, near, nil)) }))

	peer.write(kindRequest, 1, encodeRequestBody(0, []byte("a")))
	// The server may close the pipe before acknowledging the last bytes.
	_, _ = peer.nc.Write(encodeFrame(kindRequest, 1, encodeRequestBody(0, []byte("b"))))
	peer.expectClosed()
	assert.EqualValues(t, 1, tr.Stats().ProtocolErrors)
}

// A request the caller cancelled never gets a reply, even when the caller
// reuses its ID for a new request before the cancelled handler returns:
// only the new request's reply is sent.
func TestServerConn_CancelledReplyNotSentAfterIDReuse(t *testing.T) {
	releaseA, releaseB, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	tr, near, peer := newPipeTransport(t, Config{Handler: HandlerFunc(
		func(ctx context.Context, p []byte) ([]byte, error) {
			release := releaseB
			if string(p) == "aaaa" {
				release = releaseA // finishes its work although cancelled
			}
			select {
			case <-release:
				return p, nil
			case <-done:
				return nil, ctx.Err()
			}
		})})
	t.Cleanup(func() { close(done) }) // before the Transport's Close
	require.True(t, tr.spawn(func() { tr.serveRPC(newConn(near, near, nil)) }))
	waitBytes := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for tr.Stats().InFlightBytes != n {
			require.True(t, time.Now().Before(deadline), "in-flight bytes never reached %d", n)
			runtimeYield()
		}
	}

	peer.write(kindRequest, 1, encodeRequestBody(0, []byte("aaaa")))
	peer.write(kindCancel, 1, nil)
	peer.write(kindRequest, 1, encodeRequestBody(0, []byte("b")))
	waitBytes(5)
	close(releaseA)
	waitBytes(1) // the cancelled handler has returned
	close(releaseB)
	f := peer.read()
	assert.Equal(t, kindResponse, f.kind)
	assert.EqualValues(t, 1, f.id)
	assert.Equal(t, "b", string(f.body), "the cancelled request's reply was sent")
	assert.EqualValues(t, 1, tr.Stats().RequestsServed)
	assert.EqualValues(t, 1, tr.Stats().RequestsCanceled)
}

// A server reply to an unknown kind from the client direction (a request
// sent to a client) is a protocol error on the client side.
func TestClientConn_RejectsRequests(t *testing.T) {
	tr, near, peer := newPipeTransport(t, Config{})
	require.NoError(t, tr.startClientConn(newClientConn(tr, newConn(near, near, nil), "pipe")))
	_, _ = peer.nc.Write(encodeFrame(kindRequest, 1, encodeRequestBody(0, nil)))
	peer.expectClosed()
	assert.EqualValues(t, 1, tr.Stats().ProtocolErrors)
}

func runtimeYield() {
	timer := time.NewTimer(time.Millisecond)
	<-timer.C
}
