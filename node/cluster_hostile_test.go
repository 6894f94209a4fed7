package node_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/node/nodepb"

	"github.com/quorumlock/quorumlock/transport"
)

// TestCluster_HostileConnections (issue 12 item 6, network part): a
// stranger opens connections to every node's cluster port and sends
// garbage, an HTTP request, a wrong protocol byte, a huge length prefix,
// garbage after the RPC byte, a Raft byte then garbage, a truncated frame
// then silence, and a flood of silent connections from one other address,
// more than the node has handshake slots. Every one of those connections
// is closed by the node (at once, or at the handshake or I/O deadline).
// Meanwhile a new stranger's call is answered (without the per-address
// cap the flood holds every handshake slot and the call's connection is
// closed at once), and meanwhile and afterwards a Locker on every node
// acquires and releases: Raft and the forwarding RPC between the members
// are undisturbed.
func TestCluster_HostileConnections(t *testing.T) {
	c := startCluster(t, 3, false)
	ctx := clusterCtx(t)

	r := rand.New(rand.NewPCG(12, 6))
	garbage := make([]byte, 4<<10)
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	request := rawRequest(1, make([]byte, 64))
	hostile := []struct {
		what string
		send []byte
	}{
		{"garbage bytes", append([]byte{0x00}, garbage...)},
		{"an HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"a wrong protocol byte", append([]byte{'X'}, request...)},
		{"a huge length prefix", []byte{muxRPC, 0xff, 0xff, 0xff, 0xff}},
		{"garbage after the RPC byte", append([]byte{muxRPC}, garbage...)},
		{"a Raft byte then garbage", append([]byte{muxRaft, 0xee}, garbage...)},
		{"a truncated frame then silence", append([]byte{muxRPC}, request[:20]...)},
		{"a length below the header", binary.BigEndian.AppendUint32([]byte{muxRPC}, 3)},
	}
	const flood = transport.DefaultMaxPendingHandshakes + 16

	type victim struct {
		what string
		conn net.Conn
	}
	var victims []victim
	for i := range c.Size() {
		for range flood {
			victims = append(victims, victim{fmt.Sprintf("n%d: a silent connection from %s", i+1, floodHost),
				hostileDial(t, floodHost, c.Addr(i))})
		}
		for _, h := range hostile {
			conn := hostileDial(t, "", c.Addr(i))
			_, err := conn.Write(h.send)
			require.NoError(t, err, "n%d: %s", i+1, h.what)
			victims = append(victims, victim{fmt.Sprintf("n%d: %s", i+1, h.what), conn})
		}
	}

	stranger, err := transport.New(transport.Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, stranger.Close()) }()
	empty, err := proto.Marshal(&nodepb.Request{})
	require.NoError(t, err)
	for i := range c.Size() {
		reply, err := stranger.Call(ctx, c.Addr(i), empty)
		require.NoError(t, err, "n%d: a stranger's call during the flood", i+1)
		require.NoError(t, proto.Unmarshal(reply, new(nodepb.Response)), "n%d", i+1)
	}

	lockOnEveryNode := func(when string) {
		for i := range c.Size() {
			l, err := c.NewLocker(ctx, i)
			require.NoError(t, err, "n%d %s", i+1, when)
			lease, err := l.Acquire(ctx, "hostile")
			require.NoError(t, err, "n%d %s", i+1, when)
			require.NoError(t, lease.Release(ctx), "n%d %s", i+1, when)
			require.NoError(t, l.Close())
		}
	}
	lockOnEveryNode("while hostile connections are open")

	// Every hostile connection is closed by the node: the longest wait is
	// the node's I/O deadline for the truncated frame (10 s by default).
	var wg sync.WaitGroup
	errs := make(chan error, len(victims))
	for _, v := range victims {
		wg.Go(func() {
			if err := closedByPeer(v.conn, 30*time.Second); err != nil {
				errs <- fmt.Errorf("%s: %w", v.what, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lockOnEveryNode("after the hostile connections")
}

// The cluster port's protocol bytes and an RPC request frame, written by
// hand as a stranger would (transport/DESIGN.md, "RPC wire format").
const (
	muxRaft byte = 'R'
	muxRPC  byte = 'Q'
)

// rawRequest is an RPC request frame: u32 length, kind 1, u64 ID, u64
// timeout (none), payload.
func rawRequest(id uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+8+8+len(payload)))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint64(b, 0)
	return append(b, payload...)
}

// floodHost is a loopback address other than the cluster's own (Linux
// routes all of 127/8 to lo), so the flood meets the per-address cap and
// the members, all on 127.0.0.1, do not.
const floodHost = "127.0.0.2"

// hostileDial opens a TCP connection to addr from the local address src
// ("" for any), closed at cleanup; it skips the test where src cannot be
// bound.
func hostileDial(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("cannot dial from %s here: %v", src, err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// closedByPeer reads conn until the peer closes it (EOF or a reset), or
// fails after limit.
func closedByPeer(conn net.Conn, limit time.Duration) error {
	if err := conn.SetReadDeadline(time.Now().Add(limit)); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %v", limit)
	}
	return nil
}
