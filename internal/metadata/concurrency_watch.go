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
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.kv.Watch(ctx, "*.*.concurrency")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("metadata: watch reserved concurrency: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue // end of the initial values
			}
			parts := strings.Split(e.Key(), ".")
			if len(parts) != 3 {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				apply(parts[0], parts[1], 0, false)
				continue
			}
			var r Reserved
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				s.log.Warn("reserved concurrency unreadable", "key", e.Key(), "err", err)
				continue
			}
			apply(parts[0], parts[1], r.Reserved, true)
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

// WatchProvisionedConfigs calls apply with every stored provisioned
// concurrency config, then with every change from any node of the
// cluster, until stop: set is false when a config was removed (or its
// function deleted), and c then holds only Account, FunctionName and
// Qualifier. apply runs on one goroutine, in the order of the changes;
// the watch lives until stop, as WatchReservedConcurrency's does.
func (s *Store) WatchProvisionedConfigs(apply func(c *ProvisionedConfig, set bool)) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.kv.Watch(ctx, "*.*.provisioned.*")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("metadata: watch provisioned concurrency: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue // end of the initial values
			}
			parts := strings.Split(e.Key(), ".")
			if len(parts) != 4 {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				apply(&ProvisionedConfig{Account: parts[0], FunctionName: parts[1], Qualifier: parts[3]}, false)
				continue
			}
			var c ProvisionedConfig
			if err := json.Unmarshal(e.Value(), &c); err != nil {
				s.log.Warn("provisioned concurrency config unreadable", "key", e.Key(), "err", err)
				continue
			}
			apply(&c, true)
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
