package node_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lock"
	"github.com/quorumlock/quorumlock/node"
)

// A backup of one node, restored into a fresh one: the lease is there
// with its token, and later tokens are higher.
func ExampleNode_Snapshot() {
	ctx := context.Background()
	old, err := node.New(node.Config{})
	if err != nil {
		panic(err)
	}
	report, err := old.Acquire(ctx, "nightly-report", lock.WithTTL(time.Hour), lock.WithOwner("cron"))
	if err != nil {
		panic(err)
	}
	var backup bytes.Buffer
	info, err := old.Snapshot(ctx, &backup)
	if err != nil {
		panic(err)
	}
	_ = old.Close()

	fresh, err := node.New(node.Config{})
	if err != nil {
		panic(err)
	}
	defer func() { _ = fresh.Close() }()
	if err := fresh.Restore(ctx, &backup); err != nil {
		panic(err)
	}
	got, _ := fresh.Inspect(ctx, "nightly-report")
	fmt.Println("held:", got.Held, "by", got.Owner, "same token:", got.Token == report.Token())
	next, err := fresh.Acquire(ctx, "schema-migration")
	if err != nil {
		panic(err)
	}
	fmt.Println("later tokens are higher:", next.Token() > info.Index)
	// Output:
	// held: true by cron same token: true
	// later tokens are higher: true
}
