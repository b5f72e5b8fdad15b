package layers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
)

// maxAttempts bounds the optimistic-concurrency retries of one write.
const maxAttempts = 16

// Store keeps layer versions and their policies in a JetStream KV bucket
// (file storage, history 1). It is safe for concurrent use, also by
// several processes sharing the bucket: every read-modify-write is
// conditional on the revision read, so concurrent publishers never get the
// same version number and concurrent policy edits never lose a statement.
type Store struct {
	kv        jetstream.KeyValue
	partition string
	region    string
}

// Config configures a Store.
type Config struct {
	// JS is the backbone's JetStream context. Required.
	JS jetstream.JetStream
	// Replicas of the bucket (default 1); an existing one is updated.
	Replicas int
	// Region names the region in ARNs of error messages (default
	// "us-east-1").
	Region string
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	if c.JS == nil {
		return errors.New("layers: config needs a JetStream context")
	}
	return nil
}

// New opens (creating when missing) the layer bucket. ctx covers the
// opening only.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	kv, err := cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DefaultBucket,
		Description: "Flint layer versions and their policies",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, cfg.Replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("layers: open bucket %s: %w", DefaultBucket, err)
	}
	return &Store{kv: kv, partition: "aws", region: cfg.Region}, nil
}

// versionARN is the ARN of a layer version of this store's region.
func (s *Store) versionARN(account, name string, n int64) ARN {
	return ARN{Partition: s.partition, Region: s.region, Account: account, Name: name, Version: n}
}

// NotFound is Lambda's error for a missing layer version.
func (s *Store) NotFound(account, name string, n int64) error {
	return lambdaerr.New(lambdaerr.ResourceNotFound, "Layer version %s does not exist.", s.versionARN(account, name, n))
}

// validKey reports whether account and name can be key tokens.
func validKey(account, name string) bool {
	return lambdafn.IsAccountID(account) && ValidName(name)
}

// Publish stores v as the next version of its layer (v.Account, v.Name)
// and sets v.Number. Version numbers are never reused.
func (s *Store) Publish(ctx context.Context, v *Version) error {
	if !validKey(v.Account, v.Name) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid layer %s/%s", v.Account, v.Name)
	}
	n, err := s.nextNumber(ctx, v.Account, v.Name)
	if err != nil {
		return err
	}
	v.Number = n
	if v.Partition == "" {
		v.Partition = s.partition
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("layers: encode %s: %w", v.ARN(), err)
	}
	if _, err := s.kv.Create(ctx, versionKey(v.Account, v.Name, n), data); err != nil {
		return fmt.Errorf("layers: publish %s: %w", v.ARN(), err)
	}
	return nil
}

// lastRecord is the value of a layer's .last key.
type lastRecord struct {
	Last int64 `json:"last"`
}

// nextNumber reserves the next version number of a layer.
func (s *Store) nextNumber(ctx context.Context, account, name string) (int64, error) {
	key := lastKey(account, name)
	for range maxAttempts {
		e, err := s.kv.Get(ctx, key)
		var rec lastRecord
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return 0, fmt.Errorf("layers: read %s: %w", key, err)
		default:
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return 0, fmt.Errorf("layers: decode %s: %w", key, err)
			}
			rev = e.Revision()
		}
		rec.Last++
		data, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, data)
		} else {
			_, err = s.kv.Update(ctx, key, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another publisher won; read again
		}
		if err != nil {
			return 0, fmt.Errorf("layers: reserve version of %s: %w", name, err)
		}
		return rec.Last, nil
	}
	return 0, lambdaerr.New(lambdaerr.ResourceConflict, "Too many concurrent publications of layer %s; try again.", name)
}

// Get returns layer version n. A missing one is ResourceNotFoundException
// ("Layer version ARN does not exist.").
func (s *Store) Get(ctx context.Context, account, name string, n int64) (*Version, error) {
	if !validKey(account, name) || n <= 0 {
		return nil, s.NotFound(account, name, n)
	}
	e, err := s.kv.Get(ctx, versionKey(account, name, n))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, s.NotFound(account, name, n)
	}
	if err != nil {
		return nil, fmt.Errorf("layers: get %s: %w", s.versionARN(account, name, n), err)
	}
	return decode(e)
}

func decode(e jetstream.KeyValueEntry) (*Version, error) {
	var v Version
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, fmt.Errorf("layers: decode %s: %w", e.Key(), err)
	}
	return &v, nil
}

// keys lists the live keys matching a subject filter.
func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	l, err := s.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// versionOfKey parses "<account>.<name>.v<N>".
func versionOfKey(key string) (name string, n int64, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 || len(parts[2]) < 2 || parts[2][0] != 'v' {
		return "", 0, false
	}
	n, err := strconv.ParseInt(parts[2][1:], 10, 64)
	return parts[1], n, err == nil && n > 0
}

// Versions returns the live versions of a layer, newest first (empty, not
// an error, for a layer that has none).
func (s *Store) Versions(ctx context.Context, account, name string) ([]*Version, error) {
	if !validKey(account, name) {
		return nil, nil
	}
	return s.list(ctx, account+"."+name+".*")
}

// All returns every live layer version of an account, by layer name, then
// newest first.
func (s *Store) All(ctx context.Context, account string) ([]*Version, error) {
	if !lambdafn.IsAccountID(account) {
		return nil, nil
	}
	return s.list(ctx, account+".*.*")
}

func (s *Store) list(ctx context.Context, filter string) ([]*Version, error) {
	keys, err := s.keys(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("layers: list %s: %w", filter, err)
	}
	var out []*Version
	for _, k := range keys {
		if _, _, ok := versionOfKey(k); !ok {
			continue
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // deleted since listing
		}
		if err != nil {
			return nil, fmt.Errorf("layers: get %s: %w", k, err)
		}
		v, err := decode(e)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Number > out[j].Number
	})
	return out, nil
}

// Delete removes layer version n and its policy. Deleting a version that
// does not exist is not an error (DeleteLayerVersion is idempotent in
// Lambda). The zip stays in the code store: functions that use the
// version keep working, as in Lambda.
func (s *Store) Delete(ctx context.Context, account, name string, n int64) error {
	if !validKey(account, name) || n <= 0 {
		return nil
	}
	for _, k := range []string{policyKey(account, name, n), versionKey(account, name, n)} {
		if err := s.kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("layers: delete %s: %w", k, err)
		}
	}
	return nil
}
