// Package leases counts executions across every node of a Flint cluster,
// so that a function's reserved concurrency holds however many frontends
// and pollers admit its invocations.
//
// Each limited key (a function) is one entry of the JetStream KV bucket
// Bucket, holding the live leases as {"leases": {id: expiry}}. Acquire
// reads the entry, drops expired leases, refuses when the limit is
// reached, and writes the entry back with the revision it read
// (compare-and-set); a conflicting write from another node makes it read
// again. Release removes the lease the same way. A lease held by a node
// that died (kill -9) expires after its TTL (the function's timeout plus a
// grace), so the count heals by itself.
//
// Cost: two KV round trips per admitted invocation of a limited function
// (a read and a compare-and-set), two more at its end, more under
// contention; functions without reserved concurrency never touch the
// bucket. docs/cluster.md compares the alternatives.
//
// Expiries are wall-clock times of the node that took the lease: nodes'
// clocks must agree to well under a function timeout (NTP does).
package leases

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/jsretry"
)

// Bucket is the KV bucket of the leases.
const Bucket = "flint-leases"

// maxAttempts bounds the compare-and-set rounds of one Acquire or Release.
const maxAttempts = 100

// Config configures a Table.
type Config struct {
	JS jetstream.JetStream
	// Replicas of the bucket (default 1).
	Replicas int
	// Clock (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// Table is the cluster-wide lease table. Safe for concurrent use.
type Table struct {
	kv  jetstream.KeyValue
	now func() time.Time
	log *slog.Logger
}

// New opens (creating it if needed) the lease bucket.
func New(ctx context.Context, cfg Config) (*Table, error) {
	if cfg.JS == nil {
		return nil, errors.New("leases: Config.JS is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Flint: in-flight executions of functions with reserved concurrency",
		History:     1,
		Replicas:    max(cfg.Replicas, 1),
	}
	// A cluster seconds old may not answer the first request (its meta
	// leader is still settling): retried, each attempt bounded.
	var kv jetstream.KeyValue
	err := jsretry.Do(ctx, cfg.Logger, "bucket "+Bucket, func(ctx context.Context) error {
		var err error
		kv, err = cfg.JS.CreateOrUpdateKeyValue(ctx, kvc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("leases: bucket %s: %w", Bucket, err)
	}
	return &Table{kv: kv, now: cfg.Clock, log: cfg.Logger}, nil
}

type entry struct {
	// Leases maps a lease id to its expiry (Unix milliseconds).
	Leases map[string]int64 `json:"leases"`
}

// Acquire takes one of limit leases of key for ttl. Over the limit it
// returns at once a TooManyRequestsException (concurrency.Throttled with
// ReasonReserved). release gives the lease back; it is safe to call once,
// from any goroutine, and is bounded in time on its own.
func (t *Table) Acquire(ctx context.Context, key string, limit int, ttl time.Duration) (release func(), err error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	err = t.update(ctx, key, func(e *entry, now time.Time) error {
		if len(e.Leases) >= limit {
			return concurrency.Throttled(concurrency.ReasonReserved)
		}
		e.Leases[id] = now.Add(ttl).UnixMilli()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := t.update(rctx, key, func(e *entry, _ time.Time) error {
			delete(e.Leases, id)
			return nil
		})
		if err != nil {
			t.log.Warn("release lease (it expires by itself)", "key", key, "lease", id, "err", err)
		}
	}, nil
}

// Count returns the live leases of key.
func (t *Table) Count(ctx context.Context, key string) (int, error) {
	e, _, err := t.read(ctx, key)
	if err != nil {
		return 0, err
	}
	return len(e.Leases), nil
}

// update applies change to key's entry (expired leases dropped first) and
// writes it back with compare-and-set, retrying on conflicts.
func (t *Table) update(ctx context.Context, key string, change func(e *entry, now time.Time) error) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		e, rev, err := t.read(ctx, key)
		if errors.Is(err, nats.ErrNoResponders) {
			// The bucket's interest is still spreading over the
			// cluster's routes, or its leader is being elected.
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return fmt.Errorf("leases: %s: %w", key, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		now := t.now()
		if err := change(e, now); err != nil {
			return err
		}
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = t.kv.Create(ctx, key, data)
		} else {
			_, err = t.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !conflict(err) {
			return fmt.Errorf("leases: write %s: %w", key, err)
		}
		// Another node wrote first: read again, after a short random
		// pause so that contenders spread out.
		if err := sleep(ctx, time.Duration(rand.IntN(1+min(attempt, 10)))*time.Millisecond); err != nil {
			return fmt.Errorf("leases: %s: %w", key, err)
		}
	}
	return fmt.Errorf("leases: %s: too much contention", key)
}

// read returns key's entry without expired leases, and its revision (0
// when absent).
func (t *Table) read(ctx context.Context, key string) (*entry, uint64, error) {
	e := &entry{Leases: map[string]int64{}}
	kve, err := t.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("leases: read %s: %w", key, err)
	}
	if len(kve.Value()) > 0 {
		if err := json.Unmarshal(kve.Value(), e); err != nil {
			t.log.Warn("lease entry unreadable: starting it afresh", "key", key, "err", err)
			e = &entry{}
		}
	}
	if e.Leases == nil {
		e.Leases = map[string]int64{}
	}
	now := t.now().UnixMilli()
	for id, exp := range e.Leases {
		if exp <= now {
			delete(e.Leases, id)
		}
	}
	return e, kve.Revision(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// conflict reports whether err is a failed compare-and-set.
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func newID() (string, error) {
	var b [8]byte
	if _, err := cryptoRead(b[:]); err != nil {
		return "", fmt.Errorf("leases: id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

var cryptoRead = crand.Read
