package transport_test

import (
	"context"
	"testing"

	"github.com/quorumlock/quorumlock/transport"
)

// BenchmarkCall measures one Call round trip of a 64-byte echo over
// loopback: serial (one caller: latency) and parallel (GOMAXPROCS×4
// callers sharing the pooled connections: throughput with pipelining).
func BenchmarkCall(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[secure]
		var srvCfg, cliCfg transport.Config
		if secure {
			ca := newCA(b, "ca")
			srvCfg.TLS, cliCfg.TLS = ca.tlsConfig(b, "srv"), ca.tlsConfig(b, "cli")
		}
		srvCfg.Handler = echo
		srv := newTransport(b, srvCfg)
		cli := newTransport(b, cliCfg)
		payload := make([]byte, 64)
		ctx := context.Background()
		if _, err := cli.Call(ctx, srv.Addr(), payload); err != nil {
			b.Fatal(err)
		}

		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cli.Call(ctx, srv.Addr(), payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cli.Call(ctx, srv.Addr(), payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
