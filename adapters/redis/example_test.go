package redis_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/lock"
)

// A Locker on a Redis primary; lock.Do holds the lock while fn runs and
// passes the fencing token to fn. (Not run by go test: it needs a server.)
func ExampleNew() {
	l, err := redis.New(redis.Config{
		Addr:       "127.0.0.1:6379",
		SessionTTL: 5 * time.Second, // Done closes within ~5 s of losing Redis
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = l.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = lock.Do(ctx, l, "reports/nightly", func(ctx context.Context) error {
		token, _ := lock.TokenFromContext(ctx)
		// Pass token to every write, so the store can reject a stale holder.
		fmt.Println("holding the lock with token", token)
		return nil
	}, lock.WithOwner("reporter on host-1"))
	if err != nil {
		log.Fatal(err)
	}
}

// A TTL lease: it expires 30 s after the grant or the last Refresh, even if
// this process dies, and is not renewed in the background.
func ExampleLocker_TryAcquire() {
	l, err := redis.New(redis.Config{Addr: "127.0.0.1:6379"})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = l.Close() }()

	ctx := context.Background()
	lease, err := l.TryAcquire(ctx, "cron/cleanup", lock.WithTTL(30*time.Second))
	if err != nil {
		log.Print(err) // lock.ErrHeld if another process has it
		return
	}
	defer func() { _ = lease.Release(ctx) }()
	select {
	case <-lease.Done():
		log.Print("lease ended: ", lease.Err())
	case <-time.After(10 * time.Second):
		_ = lease.Refresh(ctx)
	}
}
