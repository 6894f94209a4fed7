package fsm

import (
	"fmt"
	"testing"
)

// BenchmarkSnapshot measures Snapshot of a state holding locks=N idle
// session leases (perSession per session). It reports the snapshot's size
// (B/snapshot) and its bytes per second (MB/s).
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			st := withIdle(b, n)
			data := mustSnapshot(b, st.s)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.s.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "B/snapshot") // after the loop, which resets reported metrics
		})
	}
}

// BenchmarkRestore measures Restore of BenchmarkSnapshot's snapshots.
func BenchmarkRestore(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			data := mustSnapshot(b, withIdle(b, n).s)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				s, err := Restore(data)
				if err != nil {
					b.Fatal(err)
				}
				if s.LockCount() != n {
					b.Fatalf("restored %d locks, want %d", s.LockCount(), n)
				}
			}
			b.ReportMetric(float64(len(data)), "B/snapshot")
		})
	}
}
