package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// checkPolicy refuses a store whose maxmemory-policy may evict keys: under
// memory pressure Redis would delete a live lease (volatile-*: every lease
// has a TTL; allkeys-*: the fence counter and the epoch key too) and grant
// the name to another client while the holder's Done stays open. It runs
// before every script call until the store has once reported noeviction;
// Config.SkipEvictionCheck turns it off. An error that asking again may
// cure (the store unreachable) is returned as it is; otherwise the error
// wraps ErrEvictionPolicy, also when the policy cannot be read (INFO and
// CONFIG GET both refused, as on some managed services): fail closed.
func (c *instance) checkPolicy(ctx context.Context) error {
	if c.cfg.SkipEvictionCheck || c.policyOK.Load() {
		return nil
	}
	policy, err := c.evictionPolicy(ctx)
	switch {
	case err != nil && retryable(err):
		return err
	case err != nil:
		err = fmt.Errorf("%w: cannot read maxmemory-policy (%w); make sure it is noeviction and set Config.SkipEvictionCheck", ErrEvictionPolicy, err)
	case policy != "noeviction":
		err = fmt.Errorf("%w: maxmemory-policy is %q, so Redis may evict a live lease; set it to noeviction (or Config.SkipEvictionCheck to accept the risk)", ErrEvictionPolicy, policy)
	default:
		c.policyOK.Store(true)
		return nil
	}
	if c.policyWarned.CompareAndSwap(false, true) {
		c.log.Warn("redis lock: refusing the store", "addr", c.cfg.Addr, "error", err)
	}
	return err
}

// evictionPolicy reads the store's maxmemory-policy: from INFO memory
// (allowed on most managed services), else from CONFIG GET.
func (c *instance) evictionPolicy(ctx context.Context) (string, error) {
	info, err := c.rdb.Info(ctx, "memory").Result()
	if err == nil {
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
				return v, nil
			}
		}
	} else if retryable(err) {
		return "", err
	}
	kv, cerr := c.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if cerr != nil {
		return "", errors.Join(err, cerr)
	}
	if v, ok := kv["maxmemory-policy"]; ok {
		return v, nil
	}
	return "", fmt.Errorf("%w: neither INFO memory nor CONFIG GET reports maxmemory-policy", ErrUnexpectedReply)
}
