package transport

import (
	"bufio"
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkFrame measures one RPC request frame through the framing code
// alone, without a socket (BenchmarkCall has the whole round trip):
// op=write encodes it and writes it through the writer's buffer
// (encodeRequest, then bufio.Writer Write and Flush, to io.Discard);
// op=read reads it back from a buffered stream of such frames (readFrame,
// then parseRequest). payload=64 is BenchmarkCall's payload; 4096 is a
// large lock call.
func BenchmarkFrame(b *testing.B) {
	for _, size := range []int{64, 4096} {
		payload := make([]byte, size)
		wireLen := len(encodeRequest(1, time.Second, payload))
		b.Run(fmt.Sprintf("op=write/payload=%d", size), func(b *testing.B) {
			bw := bufio.NewWriterSize(io.Discard, wireBufSize)
			b.SetBytes(int64(wireLen))
			b.ReportAllocs()
			id := uint64(0)
			for b.Loop() {
				id++
				if _, err := bw.Write(encodeRequest(id, time.Second, payload)); err != nil {
					b.Fatal(err)
				}
				if err := bw.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("op=read/payload=%d", size), func(b *testing.B) {
			br := bufio.NewReaderSize(&repeater{b: encodeRequest(1, time.Second, payload)}, wireBufSize)
			b.SetBytes(int64(wireLen))
			b.ReportAllocs()
			for b.Loop() {
				f, err := readFrame(br, DefaultMaxFrameSize)
				if err != nil {
					b.Fatal(err)
				}
				if _, p, err := parseRequest(f.body); err != nil || len(p) != size {
					b.Fatalf("request of %d bytes: %v", len(p), err)
				}
			}
		})
	}
}

// repeater reads b over and over: an endless stream of one frame.
type repeater struct {
	b   []byte
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}
