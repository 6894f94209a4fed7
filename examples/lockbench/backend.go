package main

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/adapters/redis"
	"github.com/quorumlock/quorumlock/adapters/zookeeper"
	"github.com/quorumlock/quorumlock/lock"
)

// backend makes Lockers on one store. It is the only thing that differs
// between backends: the workloads see lock.Locker alone.
type backend interface {
	// newLocker returns a new Locker (its own session) for worker i; a
	// cluster spreads the workers over its nodes by i.
	newLocker(ctx context.Context, i int) (lock.Locker, error)
	// close stops the backend once every Locker is closed.
	close()
}

// probeTimeout bounds the check that a server is there at all.
const probeTimeout = 10 * time.Second

// openBackend starts or connects to the named backend. idle is the number
// of idle locks the scale probe will hold, for the limits of the embedded
// nodes.
func openBackend(ctx context.Context, cfg config, name string) (backend, error) {
	switch name {
	case "embedded1":
		return startEmbedded(1, cfg.idle)
	case "embedded3":
		return startEmbedded(3, cfg.idle)
	case "lockd3":
		return startLockd(ctx, cfg.lockd)
	case "redis":
		return connect(ctx, "redis at "+cfg.redis, func() (lock.Locker, error) {
			return redis.New(redis.Config{Addr: cfg.redis})
		})
	case "zookeeper":
		return connect(ctx, fmt.Sprintf("zookeeper at %v", cfg.zk), func() (lock.Locker, error) {
			return zookeeper.New(zookeeper.Config{Servers: cfg.zk})
		})
	case "zookeeper3":
		return connect(ctx, fmt.Sprintf("zookeeper ensemble at %v", cfg.zk3), func() (lock.Locker, error) {
			return zookeeper.New(zookeeper.Config{Servers: cfg.zk3})
		})
	case "etcd":
		return connect(ctx, fmt.Sprintf("etcd at %v", cfg.etcd), func() (lock.Locker, error) {
			return newEtcdLocker(cfg.etcd)
		})
	case "etcd3":
		return connect(ctx, fmt.Sprintf("etcd cluster at %v", cfg.etcd3), func() (lock.Locker, error) {
			return newEtcdLocker(cfg.etcd3)
		})
	}
	return nil, fmt.Errorf("%w: unknown backend %q", errUsage, name)
}

// remote is a backend on servers this program does not run.
type remote struct {
	make func() (lock.Locker, error)
}

func (r remote) newLocker(context.Context, int) (lock.Locker, error) { return r.make() }
func (r remote) close()                                              {}

// connect checks that the server answers before any cell starts: the
// adapters connect lazily or in the background.
func connect(ctx context.Context, server string, make func() (lock.Locker, error)) (backend, error) {
	l, err := make()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	defer func() { _ = l.Close() }()
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if _, err := l.Inspect(pctx, "lockbench/probe"); err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	return remote{make: make}, nil
}
