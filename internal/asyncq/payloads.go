package asyncq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// payloadBucket holds the payloads of events too large to travel inside a
// backbone message (NATS limits a message to max_payload, 1 MB by default,
// while Lambda accepts 1 MB events, which base64 inside the JSON event
// makes larger). The event then carries PayloadRef, the object's name.
const payloadBucket = "FLINT_ASYNC_PAYLOADS"

// payloadStore keeps large event payloads in a JetStream object store.
// Objects are deleted once their event is acknowledged; the bucket's TTL
// removes any a crash left behind. Safe for concurrent use.
type payloadStore struct{ os jetstream.ObjectStore }

func openPayloadStore(ctx context.Context, js jetstream.JetStream, replicas int) (*payloadStore, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      payloadBucket,
		Description: "payloads of large Flint asynchronous invocations",
		TTL:         7 * 24 * time.Hour,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("asyncq: object store %s: %w", payloadBucket, err)
	}
	return &payloadStore{os: os}, nil
}

func (p *payloadStore) put(ctx context.Context, name string, data []byte) error {
	if _, err := p.os.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("store payload of %s: %w", name, err)
	}
	return nil
}

// get returns the payload; found is false when the object is gone.
func (p *payloadStore) get(ctx context.Context, name string) (data []byte, found bool, err error) {
	b, err := p.os.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load payload of %s: %w", name, err)
	}
	return b, true, nil
}

func (p *payloadStore) delete(ctx context.Context, name string) error {
	err := p.os.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete payload of %s: %w", name, err)
	}
	return nil
}
