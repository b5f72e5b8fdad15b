package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchReservedConcurrency calls apply with every stored reserved
// concurrency setting, then with every change from any node of the
// cluster, until stop: set is false when a setting was removed (or its
// function deleted). This is how settings reach every node's Worker
// Manager: through the store, not through the node whose API received
// them. apply runs on one goroutine, in the order of the changes. The
// watch lives until stop, not for any one call; it resumes by itself after
// a reconnect to the backbone.
func (s *Store) WatchReservedConcurrency(apply func(account, name string, n int, set bool)) (stop func(), err error) {
	return s.watchKeys("*.*.concurrency", 3, "reserved concurrency", func(parts []string, value []byte, put bool) error {
		if !put {
			apply(parts[0], parts[1], 0, false)
			return nil
		}
		var r Reserved
		if err := json.Unmarshal(value, &r); err != nil {
			return err
		}
		apply(parts[0], parts[1], r.Reserved, true)
		return nil
	})
}

// WatchProvisionedConfigs calls apply with every stored provisioned
// concurrency config, then with every change from any node of the
// cluster, until stop: set is false when a config was removed (or its
// function deleted), and c then holds only Account, FunctionName and
// Qualifier. apply runs on one goroutine, in the order of the changes;
// the watch lives until stop, as WatchReservedConcurrency's does.
func (s *Store) WatchProvisionedConfigs(apply func(c *ProvisionedConfig, set bool)) (stop func(), err error) {
	return s.watchKeys("*.*.provisioned.*", 4, "provisioned concurrency config", func(parts []string, value []byte, put bool) error {
		if !put {
			apply(&ProvisionedConfig{Account: parts[0], FunctionName: parts[1], Qualifier: parts[3]}, false)
			return nil
		}
		var c ProvisionedConfig
		if err := json.Unmarshal(value, &c); err != nil {
			return err
		}
		apply(&c, true)
		return nil
	})
}

// watchKeys watches the keys matching filter (each of n dot-separated
// parts; others are skipped) and calls on, on one goroutine, with every
// stored value and then every change: put is false for a delete or purge.
// A value on refuses is logged as unreadable (what names it) and skipped.
// The watch lives until stop and resumes by itself after a reconnect.
func (s *Store) watchKeys(filter string, n int, what string, on func(parts []string, value []byte, put bool) error) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.kv.Watch(ctx, filter)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("metadata: watch %s: %w", what, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue // end of the initial values
			}
			parts := strings.Split(e.Key(), ".")
			if len(parts) != n {
				continue
			}
			if err := on(parts, e.Value(), e.Operation() == jetstream.KeyValuePut); err != nil {
				s.log.Warn(what+" unreadable", "key", e.Key(), "err", err)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = w.Stop()
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second): // the connection is gone
			}
		})
	}, nil
}
