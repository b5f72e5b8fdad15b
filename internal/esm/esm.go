// Package esm is Lambda's event source mappings from Flint's SQS-compatible
// queues (internal/sqs): the CreateEventSourceMapping family of Lambda's API
// and the pollers that read a queue in batches and invoke the function with
// Lambda's SQS event.
//
// Mappings live in KV bucket FLINT_ESM, so every server sharing the
// backbone sees every mapping. Every server runs a manager that watches the
// bucket: it drives transitional states to their end (the first server to
// write the new state wins; the others see the newer revision) and runs a
// poller for each enabled mapping. The pollers of all servers pull from the
// queue's one JetStream consumer, so each message goes to one poller at a
// time and a mapping is drained once however many servers run it.
//
// Delivery follows Lambda: a batch whose invocation succeeds is deleted; a
// failed batch (function error, throttle, system error) is left alone and
// becomes visible again after the queue's visibility timeout, and moves to
// the queue's redrive dead-letter queue after maxReceiveCount receives. With
// FunctionResponseTypes ReportBatchItemFailures only the messages the
// function lists in batchItemFailures stay; a response that cannot be read
// fails the whole batch. docs/sqs.md has the design.
package esm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/sqs"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of mappings.
const Bucket = "FLINT_ESM"

// Invoker runs one synchronous invocation (internal/workermanager). A
// function error is a Result with FunctionError set; an error is a
// throttle or system error. Safe for concurrent use.
type Invoker interface {
	Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error)
}

// Functions resolves a function and qualifier (*metadata.Store); a
// missing one is a ResourceNotFound *lambdaerr.Error.
type Functions interface {
	Resolve(ctx context.Context, account, name, qualifier string) (*metadata.Function, *metadata.Alias, error)
}

// Config configures the service.
type Config struct {
	JetStream jetstream.JetStream // required
	Queues    *sqs.Service        // required
	Functions Functions           // required
	Invoker   Invoker             // required
	Region    string              // default us-east-1
	// DefaultAccount is the account of API requests without a caller.
	DefaultAccount string
	// DefaultConcurrency bounds a mapping's concurrent invocations on one
	// server when its ScalingConfig does not (default 10).
	DefaultConcurrency int
	Replicas           int // of the bucket (default 1)
	Logger             *slog.Logger
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	switch {
	case c.JetStream == nil:
		return errors.New("esm: JetStream is required")
	case c.Queues == nil:
		return errors.New("esm: Queues is required")
	case c.Functions == nil:
		return errors.New("esm: Functions is required")
	case c.Invoker == nil:
		return errors.New("esm: Invoker is required")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.DefaultAccount == "" {
		c.DefaultAccount = "000000000000"
	}
	if c.DefaultConcurrency <= 0 {
		c.DefaultConcurrency = 10
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Service stores mappings, serves their API (Handler) and, once started,
// runs this server's pollers. Safe for concurrent use; Start and Close are
// called once each.
type Service struct {
	cfg Config
	kv  jetstream.KeyValue
	log *slog.Logger

	mu      sync.Mutex         // guards pollers and closed
	pollers map[string]*poller // by mapping UUID
	closed  bool
	stop    context.CancelFunc // stops the watch loop
	done    chan struct{}      // closed when the watch loop returned
}

// New opens (creating if needed) the mapping bucket.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	kv, err := cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Flint event source mappings",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("esm: bucket %s: %w", Bucket, err)
	}
	return &Service{cfg: cfg, kv: kv, log: cfg.Logger.With("component", "esm"), pollers: map[string]*poller{}}, nil
}

// Start starts the manager: it watches every mapping and runs pollers for
// the enabled ones.
func (s *Service) Start() error {
	ctx, stop := context.WithCancel(context.Background())
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		stop()
		return fmt.Errorf("esm: watch mappings: %w", err)
	}
	s.stop, s.done = stop, make(chan struct{})
	go func() {
		defer close(s.done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					s.apply(ctx, e)
				}
			}
		}
	}()
	return nil
}

// Close stops the manager and every poller; pollers finish the batches
// they are invoking (until ctx ends; batches cut short become visible
// again after the visibility timeout).
func (s *Service) Close(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	s.mu.Lock()
	s.closed = true
	ps := s.pollers
	s.pollers = map[string]*poller{}
	s.mu.Unlock()
	for _, p := range ps {
		p.cancel()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// apply reacts to one change of a mapping: it drives a transitional state
// to its end and starts or stops this server's poller.
func (s *Service) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.stopPoller(e.Key())
		return
	}
	var m Mapping
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		s.log.Error("unreadable event source mapping", "uuid", e.Key(), "err", err)
		return
	}
	k := e.Key()
	switch m.State {
	case Creating, Enabling, Updating:
		s.stopPoller(k) // a changed configuration restarts it
		next := Enabled
		if !m.Enabled {
			next = Disabled
		}
		s.transition(ctx, &m, e.Revision(), next)
	case Enabled:
		s.startPoller(k, m)
	case Disabling:
		// Disabled once this server's poller takes nothing more (its
		// running batches finish on their own).
		p, rev := s.stopPoller(k), e.Revision()
		go func() {
			if p != nil {
				select {
				case <-p.received:
				case <-ctx.Done():
					return
				}
			}
			s.transition(ctx, &m, rev, Disabled)
		}()
	case Disabled:
		s.stopPoller(k)
	case Deleting:
		s.stopPoller(k)
		if err := s.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision())); err != nil && !isWrongRev(err) {
			s.log.Warn("deleting an event source mapping", "uuid", m.UUID, "err", err)
		}
	}
}

// transition writes state next if no one changed the mapping since rev.
func (s *Service) transition(ctx context.Context, m *Mapping, rev uint64, next string) {
	m.State = next
	m.LastModified = float64(time.Now().UnixMilli()) / 1000
	b, _ := json.Marshal(m)
	if _, err := s.kv.Update(ctx, mkey(m.Account, m.UUID), b, rev); err != nil && !isWrongRev(err) {
		s.log.Warn("event source mapping state", "uuid", m.UUID, "state", next, "err", err)
	}
}

func isWrongRev(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// mkey is a mapping's key in the bucket.
func mkey(account, uuid string) string { return account + "." + uuid }

func (s *Service) startPoller(key string, m Mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pollers[key] != nil {
		return
	}
	p := newPoller(s, m)
	s.pollers[key] = p
	go p.run()
}

// stopPoller stops this server's poller of a mapping and returns it (nil
// when there was none).
func (s *Service) stopPoller(key string) *poller {
	s.mu.Lock()
	p := s.pollers[key]
	delete(s.pollers, key)
	s.mu.Unlock()
	if p != nil {
		p.cancel()
	}
	return p
}

// get reads one mapping of account.
func (s *Service) get(ctx context.Context, account, uuid string) (*Mapping, uint64, error) {
	if !validUUID(uuid) {
		return nil, 0, notFound(uuid)
	}
	e, err := s.kv.Get(ctx, mkey(account, uuid))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, notFound(uuid)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("esm: read mapping %s: %w", uuid, err)
	}
	var m Mapping
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, 0, fmt.Errorf("esm: read mapping %s: %w", uuid, err)
	}
	return &m, e.Revision(), nil
}

// list returns account's mappings.
func (s *Service) list(ctx context.Context, account string) ([]*Mapping, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, account+".*")
	if err != nil {
		return nil, fmt.Errorf("esm: list mappings: %w", err)
	}
	var out []*Mapping
	for k := range lister.Keys() {
		m, _, err := s.get(ctx, account, strings.TrimPrefix(k, account+"."))
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, m)
	}
	return out, nil
}
