package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/quorumlock/quorumlock/fsm/fsmpb"
)

// BenchmarkCodec measures the log entry path: Encode and Decode of the
// commands a lock call makes (msg=acquire with a 32-byte owner, and
// msg=release), and the marshalling of the Result a forwarded Propose
// carries back (msg=result; the entry's own result never leaves memory).
func BenchmarkCodec(b *testing.B) {
	acquire := withStamp(cmdAcquire(7, 42, "orders/2024/invoice-123456", withOwner("worker-17.example.internal:4242")), 1_700_000_000_000_000_000)
	release := withStamp(cmdRelease(7, 43, "orders/2024/invoice-123456", 1_234_567), 1_700_000_000_000_000_000)
	for _, c := range []struct {
		name string
		cmd  *fsmpb.Command
	}{{"acquire", acquire}, {"release", release}} {
		data, err := Encode(c.cmd)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("msg="+c.name+"/op=encode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(c.cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("msg="+c.name+"/op=decode", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	result := resGranted(1_234_567, 1_234_560)
	data, err := proto.Marshal(result)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("msg=result/op=encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(result); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msg=result/op=decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var r fsmpb.Result
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
