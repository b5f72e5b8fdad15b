// Package jsretry waits out a young or re-electing JetStream cluster
// while a Flint server starts.
//
// On a NATS cluster seconds old (or one whose meta leader is being
// elected), the first requests can fail although nothing is wrong: the
// JetStream API has no responder yet ("no responders available"), a
// stream just created is not yet reachable over the cluster's routes ("no
// response from stream"), or the meta layer answers 503 "JetStream system
// temporarily unavailable", or a replicated stream cannot be placed because
// a peer has not reported in yet ("no suitable peers for placement, peer
// offline"). Do retries such calls, each attempt bounded, the whole bounded
// too; Starting wraps a JetStream so that every create
// or lookup of a stream, KV bucket, object store or consumer made through
// it is retried that way until Settle is called. After Settle the wrapper
// passes calls straight through: at run time a backbone that cannot answer
// must fail requests at once (docs/backbone.md), not make them wait.
package jsretry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of Do.
const (
	// Attempt bounds one attempt: a request to a cluster that has no
	// leader yet may wait for its full timeout.
	Attempt = 5 * time.Second
	// Total bounds all attempts of one Do, whatever ctx allows.
	Total = 60 * time.Second
	pause = 200 * time.Millisecond
)

// codeNoPeers is JetStream's error code for a replicated asset that no
// set of peers can hold ("no suitable peers for placement").
const codeNoPeers = 10005

// Transient reports whether err is what a JetStream cluster answers while
// it is forming or electing a leader, so that the same call may succeed a
// moment later.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
		return false // a configuration to fix, not a moment to wait
	case codeNoPeers:
		// A replicated asset cannot be placed because a known peer is
		// offline: right after a cluster starts, until every server has
		// reported in (or while one restarts). Placement failing for any
		// other reason (too few servers, storage, tags) is configuration.
		return strings.Contains(apiErr.Description, "peer offline")
	}
	return apiErr.Code == http.StatusServiceUnavailable
}

// Do calls f until it returns nil or an error that is not Transient, ctx
// ends, or Total has passed; each call gets a ctx bounded by Attempt.
// Retries are logged with what (e.g. "bucket flint-functions"). The error
// returned is f's last.
func Do(ctx context.Context, log *slog.Logger, what string, f func(ctx context.Context) error) error {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, Total)
	defer cancel()
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, Attempt)
		err := f(actx)
		acancel()
		if err == nil || !Transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: backbone not ready after %d attempts: %w", what, attempt, err)
		}
		log.Warn("backbone not ready, trying again", "what", what, "attempt", attempt, "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return fmt.Errorf("%s: backbone not ready after %d attempts: %w", what, attempt, err)
		}
	}
}

// JetStream is a JetStream whose creates and lookups of streams, KV
// buckets, object stores and consumers retry Transient errors (Do) until
// Settle. Its other methods, and the handles it returns, are the wrapped
// JetStream's own. Safe for concurrent use.
type JetStream struct {
	jetstream.JetStream
	log     *slog.Logger
	settled atomic.Bool
}

// Starting wraps js for a server's start.
func Starting(js jetstream.JetStream, log *slog.Logger) *JetStream {
	if log == nil {
		log = slog.Default()
	}
	return &JetStream{JetStream: js, log: log}
}

// Settle ends the retries: from now on every call goes straight through.
func (j *JetStream) Settle() { j.settled.Store(true) }

// do runs f once after Settle, under Do before.
func (j *JetStream) do(ctx context.Context, what string, f func(ctx context.Context) error) error {
	if j.settled.Load() {
		return f(ctx)
	}
	return Do(ctx, j.log, what, f)
}

func retried[T any](j *JetStream, ctx context.Context, what string, f func(ctx context.Context) (T, error)) (T, error) {
	var out T
	err := j.do(ctx, what, func(ctx context.Context) error {
		var err error
		out, err = f(ctx)
		return err
	})
	return out, err
}

// CreateOrUpdateStream is the wrapped one's, retried until Settle; the
// stream's consumers are created and looked up the same way.
func (j *JetStream) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := retried(j, ctx, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		return j.JetStream.CreateOrUpdateStream(ctx, cfg)
	})
	return j.stream(st), err
}

// Stream is the wrapped one's, retried until Settle.
func (j *JetStream) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := retried(j, ctx, "stream "+name, func(ctx context.Context) (jetstream.Stream, error) {
		return j.JetStream.Stream(ctx, name)
	})
	return j.stream(st), err
}

func (j *JetStream) stream(st jetstream.Stream) jetstream.Stream {
	if st == nil {
		return nil
	}
	return &stream{Stream: st, j: j}
}

// stream retries the creation and lookup of its consumers as its
// JetStream does.
type stream struct {
	jetstream.Stream
	j *JetStream
}

func (s *stream) CreateOrUpdateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return retried(s.j, ctx, "consumer of "+s.CachedInfo().Config.Name, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.Stream.CreateOrUpdateConsumer(ctx, cfg)
	})
}

func (s *stream) Consumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	return retried(s.j, ctx, "consumer "+name, func(ctx context.Context) (jetstream.Consumer, error) {
		return s.Stream.Consumer(ctx, name)
	})
}

// CreateOrUpdateKeyValue is the wrapped one's, retried until Settle.
func (j *JetStream) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retried(j, ctx, "bucket "+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

// KeyValue is the wrapped one's, retried until Settle.
func (j *JetStream) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return retried(j, ctx, "bucket "+bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		return j.JetStream.KeyValue(ctx, bucket)
	})
}

// CreateOrUpdateObjectStore is the wrapped one's, retried until Settle.
func (j *JetStream) CreateOrUpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return retried(j, ctx, "object store "+cfg.Bucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return j.JetStream.CreateOrUpdateObjectStore(ctx, cfg)
	})
}

// ObjectStore is the wrapped one's, retried until Settle.
func (j *JetStream) ObjectStore(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	return retried(j, ctx, "object store "+bucket, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return j.JetStream.ObjectStore(ctx, bucket)
	})
}

// CreateOrUpdateConsumer is the wrapped one's, retried until Settle.
func (j *JetStream) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return retried(j, ctx, "consumer of "+stream, func(ctx context.Context) (jetstream.Consumer, error) {
		return j.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
	})
}

// WaitReady returns once the JetStream API answers (the cluster has a meta
// leader), retrying as Do does.
func WaitReady(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	return Do(ctx, log, "JetStream account info", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}
