// Package secrets keeps the cluster-wide secrets of a Flint cluster (the
// code-link signing key, the worker port key) in one JetStream KV bucket,
// Bucket: each secret is created by the first server that needs it and
// read by every other, so every node of a cluster agrees on it without an
// operator handing it out. The bucket is as safe as the NATS account it
// lives in: whoever can read the backbone can read the secrets
// (docs/backbone.md says how to protect it).
package secrets

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/jsretry"
)

// Bucket is the KV bucket of the secrets.
const Bucket = "flint-secrets"

// Size is the length of a secret made by Load.
const Size = 32

// Load returns the secret called name, creating a random one of Size
// bytes when none exists; of servers racing to create it, the first write
// wins and the others read it. A young cluster's transient failures are
// retried (package jsretry). replicas is the bucket's replica count.
func Load(ctx context.Context, js jetstream.JetStream, replicas int, name string, log *slog.Logger) ([]byte, error) {
	var kv jetstream.KeyValue
	err := jsretry.Do(ctx, log, "bucket "+Bucket, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      Bucket,
			Description: "Flint cluster-wide secrets",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    max(1, replicas),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("secrets: open bucket %s: %w", Bucket, err)
	}
	var secret []byte
	err = jsretry.Do(ctx, log, "secret "+name, func(ctx context.Context) error {
		var err error
		secret, err = loadOrCreate(ctx, kv, name)
		return err
	})
	return secret, err
}

func loadOrCreate(ctx context.Context, kv jetstream.KeyValue, name string) ([]byte, error) {
	for range 3 {
		e, err := kv.Get(ctx, name)
		if err == nil && len(e.Value()) >= Size {
			return e.Value(), nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, fmt.Errorf("secrets: read %s: %w", name, err)
		}
		fresh := make([]byte, Size)
		if _, err := rand.Read(fresh); err != nil {
			return nil, fmt.Errorf("secrets: new %s: %w", name, err)
		}
		if _, err := kv.Create(ctx, name, fresh); err == nil {
			return fresh, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("secrets: store %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("secrets: %s neither readable nor creatable", name)
}
