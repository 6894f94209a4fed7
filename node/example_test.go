package node_test

import (
	"context"
	"fmt"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

func Example() {
	ctx := context.Background()
	n, err := node.New(node.Config{}) // in memory, leader at once
	if err != nil {
		panic(err)
	}
	defer func() { _ = n.Close() }()

	lease, err := n.Acquire(ctx, "schema-migration", lock.WithOwner("replica-1"))
	if err != nil {
		panic(err)
	}
	info, _ := n.Inspect(ctx, "schema-migration")
	fmt.Println("held:", info.Held, "by", info.Owner, "token matches:", info.Token == lease.Token())

	_, err = n.TryAcquire(ctx, "schema-migration")
	fmt.Println(err)

	_ = lease.Release(ctx)
	fmt.Println(lease.Err())
	// Output:
	// held: true by replica-1 token matches: true
	// quorumlock: lock is held: "schema-migration"
	// quorumlock: lease released
}
