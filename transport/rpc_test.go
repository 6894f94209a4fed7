package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/transport"
)

func TestCall_Echo(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo})
	cli := newTransport(t, transport.Config{})

	for _, p := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0xab}, 256<<10)} {
		got, err := cli.Call(ctxWithLimit(t), srv.Addr(), p)
		require.NoError(t, err)
		assert.Equal(t, len(p), len(got))
		assert.True(t, bytes.Equal(p, got))
	}
	st := srv.Stats()
	assert.EqualValues(t, 3, st.RequestsServed)
	assert.LessOrEqual(t, st.RPCConnsAccepted, uint64(transport.DefaultConnsPerPeer))
}

func TestCall_DoesNotRetainPayload(t *testing.T) {
	got := make(chan []byte, 1)
	srv := newTransport(t, transport.Config{Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) {
			got <- bytes.Clone(p)
			return nil, nil
		})})
	cli := newTransport(t, transport.Config{})
	p := []byte("original")
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), p)
	require.NoError(t, err)
	copy(p, "mutated!")
	assert.Equal(t, "original", string(recvWithin(t, got, "payload")))
}

// Many calls are in flight on ONE connection at once: the handler blocks
// until all N requests have reached it, which only completes if the client
// does not wait for one reply before sending the next request.
func TestCall_ManyInFlightShareOneConnection(t *testing.T) {
	const n = 64
	var inFlight atomic.Int32
	all := make(chan struct{})
	srv := newTransport(t, transport.Config{Handler: transport.HandlerFunc(
		func(ctx context.Context, p []byte) ([]byte, error) {
			if inFlight.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
				return p, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})

	ctx := ctxWithLimit(t)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("req-%d", i)
			got, err := cli.Call(ctx, srv.Addr(), []byte(want))
			if err == nil && string(got) != want {
				err = fmt.Errorf("got %q, want %q", got, want)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.EqualValues(t, n, inFlight.Load())
	assert.EqualValues(t, 1, srv.Stats().RPCConnsAccepted, "all calls shared one connection")
	assert.EqualValues(t, 1, cli.Stats().Dials)
	assert.EqualValues(t, 0, cli.Stats().PendingCalls)
}

// blocker is a handler that reports each request's arrival and blocks until
// released or until its ctx ends; "echo:" requests are answered at once.
type blocker struct {
	started chan []byte
	ended   chan error // ctx.Err() of requests that ended by ctx
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan []byte, 16), ended: make(chan error, 16), release: make(chan struct{})}
}

func (b *blocker) ServeRPC(ctx context.Context, p []byte) ([]byte, error) {
	if bytes.HasPrefix(p, []byte("echo:")) {
		return p, nil
	}
	b.started <- p
	select {
	case <-b.release:
		return []byte("released"), nil
	case <-ctx.Done():
		b.ended <- ctx.Err()
		return nil, ctx.Err()
	}
}

func TestCall_ContextDeadlineOnSlowHandler(t *testing.T) {
	b := newBlocker()
	srv := newTransport(t, transport.Config{Handler: b})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:warm up")) // dial outside the deadline
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = cli.Call(ctx, srv.Addr(), []byte("slow"))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ctx.Err())
	assert.EqualValues(t, 0, cli.Stats().PendingCalls, "the pending slot is freed")

	// The handler's ctx ends too (propagated deadline / cancel frame).
	recvWithin(t, b.started, "request start")
	assert.Error(t, recvWithin(t, b.ended, "handler ctx end"))

	// The connection survives a slow handler.
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:again"))
	require.NoError(t, err)
	assert.Equal(t, "echo:again", string(got))
	assert.EqualValues(t, 1, cli.Stats().Dials)
	assert.EqualValues(t, 0, cli.Stats().ConnsLost)
}

func TestCall_ContextCanceledCancelsHandler(t *testing.T) {
	b := newBlocker()
	srv := newTransport(t, transport.Config{Handler: b})
	cli := newTransport(t, transport.Config{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctx, srv.Addr(), []byte("wait"))
		errc <- err
	}()
	recvWithin(t, b.started, "request start")
	cancel()
	err := recvWithin(t, errc, "call return")
	assert.ErrorIs(t, err, context.Canceled)
	// No deadline was propagated: only the cancel frame can end the handler.
	assert.ErrorIs(t, recvWithin(t, b.ended, "handler ctx end"), context.Canceled)
	waitFor(t, "server to count the cancel", func() bool { return srv.Stats().RequestsCanceled == 1 })
}

func TestCall_ContextAlreadyDone(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: echo})
	cli := newTransport(t, transport.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := cli.Call(ctx, srv.Addr(), []byte("x"))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestCall_RemoteError(t *testing.T) {
	srv := newTransport(t, transport.Config{Handler: transport.HandlerFunc(
		func(context.Context, []byte) ([]byte, error) {
			return nil, errors.New("not the leader")
		})})
	cli := newTransport(t, transport.Config{})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("x"))
	var re *transport.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "not the leader", re.Message)
	assert.False(t, transport.Retryable(err))
}

func TestCall_NoHandler(t *testing.T) {
	srv := newTransport(t, transport.Config{})
	cli := newTransport(t, transport.Config{})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("x"))
	var re *transport.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, re.Message, "no handler")
}

func TestCall_PayloadTooLarge(t *testing.T) {
	const maxFrame = 64 << 10
	srv := newTransport(t, transport.Config{Handler: echo, MaxFrameSize: maxFrame})
	cli := newTransport(t, transport.Config{MaxFrameSize: maxFrame})

	// The largest payload that fits.
	p := make([]byte, maxFrame-transport.FrameOverhead)
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), p)
	require.NoError(t, err)

	// One byte more is refused locally; nothing is sent, nothing is closed.
	_, err = cli.Call(ctxWithLimit(t), srv.Addr(), make([]byte, len(p)+1))
	assert.ErrorIs(t, err, transport.ErrFrameTooLarge)
	assert.False(t, transport.Retryable(err))
	assert.EqualValues(t, 0, srv.Stats().FramesRejected)
	assert.EqualValues(t, 0, cli.Stats().ConnsLost)
}

func TestCall_ResponseTooLarge(t *testing.T) {
	const maxFrame = 64 << 10
	srv := newTransport(t, transport.Config{MaxFrameSize: maxFrame, Handler: transport.HandlerFunc(
		func(context.Context, []byte) ([]byte, error) { return make([]byte, maxFrame), nil })})
	cli := newTransport(t, transport.Config{MaxFrameSize: maxFrame, ConnsPerPeer: 1})
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("x"))
	assert.ErrorIs(t, err, transport.ErrFrameTooLarge)
	assert.EqualValues(t, 0, cli.Stats().ConnsLost, "the server refused to send it; the connection is fine")
}

func TestCall_Busy(t *testing.T) {
	b := newBlocker()
	srv := newTransport(t, transport.Config{Handler: b, MaxInFlightPerConn: 1})
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})

	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("hold"))
		errc <- err
	}()
	recvWithin(t, b.started, "first request")

	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:second"))
	assert.ErrorIs(t, err, transport.ErrBusy)
	assert.True(t, transport.Retryable(err))
	assert.EqualValues(t, 1, srv.Stats().RequestsBusy)

	close(b.release)
	assert.NoError(t, recvWithin(t, errc, "first call"))
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:third"))
	require.NoError(t, err)
	assert.Equal(t, "echo:third", string(got))
}

// budgetServer is a server whose handlers block (blocker) with small frame
// and byte caps: 4 KiB frames, 8 KiB of payload per connection, total as
// given.
func budgetServer(t *testing.T, total int) (*transport.Transport, *blocker) {
	t.Helper()
	b := newBlocker()
	srv := newTransport(t, transport.Config{
		Handler: b, MaxFrameSize: 4 << 10, MaxInFlightPerConn: 3,
		MaxInFlightBytesPerConn: 8 << 10, MaxInFlightBytes: total,
	})
	return srv, b
}

// hold makes a call of n bytes that the blocker holds until released; it
// returns the call's outcome channel once the handler has it.
func hold(t *testing.T, cli *transport.Transport, addr string, b *blocker, n int) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxWithLimit(t), addr, bytes.Repeat([]byte{'h'}, n))
		errc <- err
	}()
	recvWithin(t, b.started, "held request")
	return errc
}

// A request whose payload would push its connection's running handlers
// over MaxInFlightBytesPerConn is answered busy; smaller requests on the
// same connection are served, and so is the big one once the budget frees.
func TestCall_BusyOverConnByteBudget(t *testing.T) {
	srv, b := budgetServer(t, 1<<20)
	cli := newTransport(t, transport.Config{MaxFrameSize: 4 << 10, ConnsPerPeer: 1})
	held := []<-chan error{hold(t, cli, srv.Addr(), b, 3<<10), hold(t, cli, srv.Addr(), b, 3<<10)}
	assert.EqualValues(t, 6<<10, srv.Stats().InFlightBytes)

	big := append([]byte("echo:"), make([]byte, 3<<10)...)
	_, err := cli.Call(ctxWithLimit(t), srv.Addr(), big)
	assert.ErrorIs(t, err, transport.ErrBusy)
	assert.True(t, transport.Retryable(err))
	assert.EqualValues(t, 1, srv.Stats().RequestsOverBudget)

	// Fits: 6 KiB + 10 bytes. The refused request gave its slot back (3
	// handlers at most: two held, this one).
	got, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:small"))
	require.NoError(t, err)
	assert.Equal(t, "echo:small", string(got))

	close(b.release)
	for _, errc := range held {
		assert.NoError(t, recvWithin(t, errc, "held call"))
	}
	waitFor(t, "budget released", func() bool { return srv.Stats().InFlightBytes == 0 })
	got, err = cli.Call(ctxWithLimit(t), srv.Addr(), big)
	require.NoError(t, err)
	assert.Len(t, got, len(big))

	st := srv.Stats()
	assert.EqualValues(t, 1, st.RequestsOverBudget)
	assert.EqualValues(t, 0, st.RequestsBusy)
	assert.EqualValues(t, 0, st.ProtocolErrors)
	assert.EqualValues(t, 1, cli.Stats().Dials, "one connection throughout")
	assert.EqualValues(t, 0, cli.Stats().ConnsLost)
}

// MaxInFlightBytes is shared by all connections: a request on a fresh
// connection is answered busy when other connections' handlers hold the
// Transport's budget.
func TestCall_BusyOverTransportByteBudget(t *testing.T) {
	srv, b := budgetServer(t, 8<<10)
	cliA := newTransport(t, transport.Config{MaxFrameSize: 4 << 10, ConnsPerPeer: 1})
	cliB := newTransport(t, transport.Config{MaxFrameSize: 4 << 10, ConnsPerPeer: 1})
	held := []<-chan error{hold(t, cliA, srv.Addr(), b, 3<<10), hold(t, cliA, srv.Addr(), b, 3<<10)}

	big := append([]byte("echo:"), make([]byte, 3<<10)...)
	_, err := cliB.Call(ctxWithLimit(t), srv.Addr(), big)
	assert.ErrorIs(t, err, transport.ErrBusy)
	assert.EqualValues(t, 1, srv.Stats().RequestsOverBudget)
	got, err := cliB.Call(ctxWithLimit(t), srv.Addr(), []byte("echo:small"))
	require.NoError(t, err)
	assert.Equal(t, "echo:small", string(got))

	close(b.release)
	for _, errc := range held {
		assert.NoError(t, recvWithin(t, errc, "held call"))
	}
	waitFor(t, "budget released", func() bool { return srv.Stats().InFlightBytes == 0 })
	_, err = cliB.Call(ctxWithLimit(t), srv.Addr(), big)
	require.NoError(t, err)
	assert.EqualValues(t, 0, cliA.Stats().ConnsLost)
	assert.EqualValues(t, 0, cliB.Stats().ConnsLost)
	assert.EqualValues(t, 1, srv.Stats().RequestsOverBudget)
}

// A connection cut mid-call fails the pending call with a retryable error;
// the next call redials.
func TestCall_ConnectionKilledMidCall(t *testing.T) {
	b := newBlocker()
	srv := newTransport(t, transport.Config{Handler: b})
	px := newProxy(t, srv.Addr())
	cli := newTransport(t, transport.Config{ConnsPerPeer: 1})

	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxWithLimit(t), px.Addr(), []byte("hold"))
		errc <- err
	}()
	recvWithin(t, b.started, "request start")
	px.KillAll()

	err := recvWithin(t, errc, "call to fail")
	assert.ErrorIs(t, err, transport.ErrConnLost)
	assert.True(t, transport.Retryable(err))
	// The server noticed too and cancelled the handler.
	assert.ErrorIs(t, recvWithin(t, b.ended, "handler ctx end"), context.Canceled)

	got, err := cli.Call(ctxWithLimit(t), px.Addr(), []byte("echo:after"))
	require.NoError(t, err)
	assert.Equal(t, "echo:after", string(got))
	st := cli.Stats()
	assert.EqualValues(t, 2, st.Dials)
	assert.EqualValues(t, 1, st.ConnsLost)
	assert.EqualValues(t, 0, st.PendingCalls)
	waitFor(t, "server to see two RPC connections", func() bool { return srv.Stats().RPCConnsAccepted == 2 })
}

func TestCall_Unreachable(t *testing.T) {
	// A port that was just freed: nothing listens there.
	gone, err := transport.New(transport.Config{})
	require.NoError(t, err)
	addr := gone.Addr()
	require.NoError(t, gone.Close())

	cli := newTransport(t, transport.Config{DialTimeout: 2 * time.Second})
	_, err = cli.Call(ctxWithLimit(t), addr, []byte("x"))
	assert.ErrorIs(t, err, transport.ErrUnreachable)
	assert.True(t, transport.Retryable(err))
	assert.EqualValues(t, 1, cli.Stats().DialFailures)
}

// Callers of an empty slot share one dial; a caller whose ctx ends while the
// dial is under way returns its ctx error.
func TestCall_ContextEndsDuringDial(t *testing.T) {
	// A listener that never accepts at the application level still completes
	// TCP handshakes (kernel backlog), so use a TLS server that never answers:
	// the client's TLS handshake waits.
	ca := newCA(t, "ca")
	silent := rawListener(t)
	cli := newTransport(t, transport.Config{TLS: ca.tlsConfig(t, "cli"), DialTimeout: waitLimit})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := cli.Call(ctx, silent, []byte("x"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 0, cli.Stats().PendingCalls)
}

func TestClose_FailsPendingCallsWithErrClosed(t *testing.T) {
	b := newBlocker()
	srv := newTransport(t, transport.Config{Handler: b})
	cli, err := transport.New(transport.Config{})
	require.NoError(t, err)

	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("hold"))
		errc <- err
	}()
	recvWithin(t, b.started, "request start")
	require.NoError(t, cli.Close())
	assert.ErrorIs(t, recvWithin(t, errc, "call to fail"), transport.ErrClosed)
	assert.ErrorIs(t, recvWithin(t, b.ended, "handler ctx end"), context.Canceled)
}

func TestClose_ServerSideCancelsHandlers(t *testing.T) {
	b := newBlocker()
	srv, err := transport.New(transport.Config{Handler: b})
	require.NoError(t, err)
	cli := newTransport(t, transport.Config{})

	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctxWithLimit(t), srv.Addr(), []byte("hold"))
		errc <- err
	}()
	recvWithin(t, b.started, "request start")
	require.NoError(t, srv.Close()) // waits for the handler, whose ctx it cancels
	assert.ErrorIs(t, recvWithin(t, b.ended, "handler ctx end"), context.Canceled)
	err = recvWithin(t, errc, "call to fail")
	assert.ErrorIs(t, err, transport.ErrConnLost)
}

func TestCall_BothDirectionsAndSelf(t *testing.T) {
	a := newTransport(t, transport.Config{Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { return append([]byte("a:"), p...), nil })})
	b := newTransport(t, transport.Config{Handler: transport.HandlerFunc(
		func(_ context.Context, p []byte) ([]byte, error) { return append([]byte("b:"), p...), nil })})
	ctx := ctxWithLimit(t)
	got, err := a.Call(ctx, b.Addr(), []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "b:x", string(got))
	got, err = b.Call(ctx, a.Addr(), []byte("y"))
	require.NoError(t, err)
	assert.Equal(t, "a:y", string(got))
	got, err = a.Call(ctx, a.Addr(), []byte("z"))
	require.NoError(t, err)
	assert.Equal(t, "a:z", string(got))
}
