package transport_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/transport"
)

// Two nodes on loopback: b serves RPC with a handler, a calls it. In a
// cluster the same listeners also carry Raft through Raft().
func Example() {
	upper := transport.HandlerFunc(func(_ context.Context, p []byte) ([]byte, error) {
		return bytes.ToUpper(p), nil
	})
	b, err := transport.New(transport.Config{Handler: upper})
	if err != nil {
		panic(err)
	}
	defer func() { _ = b.Close() }()
	a, err := transport.New(transport.Config{})
	if err != nil {
		panic(err)
	}
	defer func() { _ = a.Close() }()

	reply, err := a.Call(context.Background(), b.Addr(), []byte("hello"))
	fmt.Println(string(reply), err)
	// Output: HELLO <nil>
}
