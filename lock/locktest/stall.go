package locktest

import (
	"sync"
	"time"
)

// stallWatch measures how late this process's timers fire: a goroutine
// sleeps a millisecond at a time and keeps the worst lateness of its
// wake-ups. A holder's local deadline (I3) is a timer on the same runtime,
// so on a machine busy enough to delay it, the holder learns of its
// lease's end later than its deadline by about as much; the contract
// promises I3 only "as far as the holder's own clock and scheduling
// allow", and the suite must not fail a backend for the machine's load.
type stallWatch struct {
	stop  chan struct{}
	once  sync.Once
	done  chan struct{}
	worst time.Duration // written by the goroutine until done closes
}

func watchStalls() *stallWatch {
	s := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		const nap = time.Millisecond
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			start := time.Now()
			time.Sleep(nap)
			s.worst = max(s.worst, time.Since(start)-nap)
		}
	}()
	return s
}

// end stops the watch and returns the worst lateness it saw. It may be
// called more than once.
func (s *stallWatch) end() time.Duration {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.worst
}
