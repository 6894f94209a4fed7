package zookeeper

import "sync/atomic"

// hooks are functions tests set to widen a race window at a known point
// (export_test.go); a Locker in use has none.
type hooks struct {
	writeAcked func() // a lease's SetData was acknowledged, not yet recorded (lease.write)
	writeWaits func() // a lease's write waits for its turn (lease.turn)
	beforeArm  func() // a claim that waits has listed, and arms its watch next (queue)
	slotChosen func() // a permit claim chose its slot, and writes it next (queue)
}

// hookSet is a Locker's hooks, set once by a test.
type hookSet struct{ p atomic.Pointer[hooks] }

// call runs the hook pick chooses, if one is set.
func (s *hookSet) call(pick func(*hooks) func()) {
	if h := s.p.Load(); h != nil {
		if f := pick(h); f != nil {
			f()
		}
	}
}
