package node_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// Leader election: campaign, watch the seat, resign. Any Locker of
// NewLocker is a lock.Elector; the Node's own default client is
// n.Elector().
func ExampleNode_Elector() {
	ctx := context.Background()
	n, err := node.New(node.Config{})
	if err != nil {
		panic(err)
	}
	defer func() { _ = n.Close() }()
	e := n.Elector()

	watch, cancel := context.WithCancel(ctx)
	defer cancel()
	states, err := e.Observe(watch, "jobs/leader")
	if err != nil {
		panic(err)
	}
	fmt.Println("elected:", (<-states).Elected()) // the empty seat first

	term, err := e.Campaign(ctx, "jobs/leader", "replica-1:8080")
	if err != nil {
		panic(err)
	}
	s := <-states
	fmt.Println("elected:", s.Value, "token matches:", s.Token == term.Token())

	_ = term.Proclaim(ctx, "replica-1:9090") // same term, new value
	fmt.Println("now:", (<-states).Value)

	_ = term.Release(ctx) // resign: Done closes first
	fmt.Println("elected:", (<-states).Elected())
	_, err = e.Leader(ctx, "jobs/leader")
	fmt.Println(errors.Is(err, lock.ErrNoLeader))
	// Output:
	// elected: false
	// elected: replica-1:8080 token matches: true
	// now: replica-1:9090
	// elected: false
	// true
}

// A counting semaphore: at most 2 permits of "exports" at once, each with
// its own token and a slot that no other permit held at the same time has.
func ExampleNode_AcquirePermit() {
	ctx := context.Background()
	n, err := node.New(node.Config{})
	if err != nil {
		panic(err)
	}
	defer func() { _ = n.Close() }()

	a, _ := n.AcquirePermit(ctx, "exports", 2)
	b, _ := n.AcquirePermit(ctx, "exports", 2)
	fmt.Println("slots:", a.Slot(), b.Slot(), "tokens increase:", b.Token() > a.Token())
	_, err = n.TryAcquirePermit(ctx, "exports", 2)
	fmt.Println(errors.Is(err, lock.ErrHeld))
	_, err = n.TryAcquirePermit(ctx, "exports", 3) // not the limit in force
	fmt.Println(err)

	_ = a.Release(ctx)
	c, _ := n.TryAcquirePermit(ctx, "exports", 2)
	fmt.Println("the freed slot:", c.Slot())
	_ = b.Release(ctx)
	_ = c.Release(ctx)
	// Output:
	// slots: 0 1 tokens increase: true
	// true
	// quorumlock: invalid option: "exports" is a semaphore of limit 2, asked as a semaphore of limit 3
	// the freed slot: 0
}

// A read-write lock: many readers or one writer, and a waiting writer
// holds back later readers.
func ExampleNode_AcquireRead() {
	ctx := context.Background()
	n, err := node.New(node.Config{})
	if err != nil {
		panic(err)
	}
	defer func() { _ = n.Close() }()

	r1, _ := n.AcquireRead(ctx, "catalog")
	r2, _ := n.AcquireRead(ctx, "catalog")
	_, err = n.TryAcquireWrite(ctx, "catalog")
	fmt.Println("write while read:", errors.Is(err, lock.ErrHeld))

	written := make(chan uint64)
	go func() {
		w, err := n.AcquireWrite(ctx, "catalog") // queues behind the readers
		if err != nil {
			panic(err)
		}
		written <- w.Token()
		_ = w.Release(ctx)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // until the writer queues
		if info, _ := n.Inspect(ctx, "catalog"); info.Waiters == 1 {
			break
		}
		if time.Now().After(deadline) {
			panic("the writer did not queue")
		}
	}
	_, err = n.TryAcquireRead(ctx, "catalog")
	fmt.Println("read behind a waiting writer:", errors.Is(err, lock.ErrHeld))
	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	fmt.Println("the writer's token is above the readers':", <-written > r2.Token())
	// Output:
	// write while read: true
	// read behind a waiting writer: true
	// the writer's token is above the readers': true
}
