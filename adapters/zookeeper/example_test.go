package zookeeper_test

import (
	"context"
	"log"
	"time"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// The same code runs on every backend; only the constructor differs. (Not
// run as a test: it needs a ZooKeeper ensemble.)
func ExampleNew() {
	l, err := zookeeper.New(zookeeper.Config{
		Servers:        []string{"zk1:2181", "zk2:2181", "zk3:2181"},
		SessionTimeout: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = l.Close() }()

	ctx := context.Background()
	err = lock.Do(ctx, l, "nightly-report", func(ctx context.Context) error {
		token, _ := lock.TokenFromContext(ctx)
		log.Printf("holding the lock with fencing token %d", token)
		return nil // ctx is cancelled if the lease is lost
	}, lock.WithOwner("host-1"))
	if err != nil {
		log.Fatal(err)
	}
}
