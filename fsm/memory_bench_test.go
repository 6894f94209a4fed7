package fsm

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkMemory measures the heap the state keeps per held lock
// (kind=lock: n idle session leases, perSession per session) and per
// waiter (kind=waiter: one queued claim on each of n held locks,
// perSession per session), as live heap after a GC, before and after
// applying the Acquires that make them (their sessions are opened before:
// a session's own cost, a few hundred bytes, is not counted). The time per
// op is that of applying n Acquires.
func BenchmarkMemory(b *testing.B) {
	for _, n := range benchSizes[1:] {
		b.Run(fmt.Sprintf("kind=lock/n=%d", n), func(b *testing.B) {
			setup := func(st *benchState) { st.openSessions(b, holderBase, n) }
			benchMemory(b, "B/lock", setup, func(st *benchState) { st.holdIdle(b, n) }, n)
		})
		b.Run(fmt.Sprintf("kind=waiter/n=%d", n), func(b *testing.B) {
			setup := func(st *benchState) {
				st.openSessions(b, holderBase, n)
				st.openSessions(b, waiterBase, n)
				st.holdIdle(b, n)
			}
			benchMemory(b, "B/waiter", setup, func(st *benchState) { st.queueIdle(b, n) }, n)
		})
	}
}

// benchMemory reports the live heap that grow adds to a state that setup
// made, per item.
func benchMemory(b *testing.B, unit string, setup, grow func(*benchState), items int) {
	var total uint64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		st := newBenchState(b)
		setup(st)
		before := liveHeap()
		b.StartTimer()
		grow(st)
		b.StopTimer()
		total += liveHeap() - before
		runtime.KeepAlive(st)
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(items), unit)
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
