// Package asyncq is Flint's asynchronous invocation path, the way Lambda
// does it: the frontend hands an InvocationType=Event request to Enqueue,
// which returns once JetStream has stored the event durably (202 to the
// caller); pollers take events off the queue and run them through the
// synchronous path (an Invoker), retrying function errors up to
// MaximumRetryAttempts and throttles/system errors until
// MaximumEventAgeInSeconds runs out; the outcome goes to the configured
// destinations (OnSuccess / OnFailure, Lambda's invocation record) and to the
// function's dead-letter queue.
//
// The package also serves Lambda's event-invoke-config API (2019-09-25
// routes), Flint's invocation status extension and the Flint queue routes
// (see Handler). docs/async.md describes the design and the delivery
// guarantees.
package asyncq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/flintdev/flint/internal/asyncq/queues"
	"github.com/flintdev/flint/internal/clock"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go/jetstream"
)

// Invoker is the synchronous invocation path (implemented by
// internal/workermanager). Invoke runs one invocation of fn to completion.
// A function error comes back as a Result with FunctionError != "" and a nil
// error; a returned error is a throttle (lambdaerr.Is(err,
// lambdaerr.TooManyRequests)) or a system error. Invoke must be safe for
// concurrent use; ctx cancellation asks it to give up.
type Invoker interface {
	Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error)
}

// FunctionGetter looks up function versions (implemented by
// *metadata.Store). Both methods return a *lambdaerr.Error of type
// ResourceNotFound (possibly wrapped) when the function, version or alias
// does not exist. Safe for concurrent use.
type FunctionGetter interface {
	// Get returns a version ($LATEST or a number).
	Get(ctx context.Context, account, name, version string) (*metadata.Function, error)
	// Resolve returns what a qualifier names: $LATEST, a version, or an
	// alias (then alias is set and fn is its primary version).
	Resolve(ctx context.Context, account, name, qualifier string) (fn *metadata.Function, alias *metadata.Alias, err error)
}

// Config configures the asynchronous invocation service.
type Config struct {
	// JetStream is the backbone's JetStream context (required).
	JetStream jetstream.JetStream
	// Invoker runs events synchronously (required).
	Invoker Invoker
	// Functions resolves function versions (required).
	Functions FunctionGetter
	// Clock stamps events and statuses and decides when a retry or a
	// back-off is due and when an event is too old (default clock.Real);
	// tests inject a fake one to age events and schedule retries.
	Clock clock.Clock
	// Rand returns a uniform number in [0, 1); it picks the version of a
	// weighted alias when an event queued through it runs (default
	// math/rand/v2.Float64).
	Rand func() float64
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// Concurrency bounds the events running at once in this process
	// (default 64).
	Concurrency int
	// PerFunctionConcurrency bounds the events of one function (all its
	// versions) running at once in this process, so a busy function cannot
	// take every slot (default 8).
	PerFunctionConcurrency int
	// RetryDelays is the wait before retry i+1 after a function error;
	// the last entry repeats (default Lambda's 1 minute, 2 minutes).
	RetryDelays []time.Duration
	// ThrottleBackoffMin and ThrottleBackoffMax bound the exponential wait
	// after a throttle or system error (default 1s and 5m, as Lambda).
	ThrottleBackoffMin time.Duration
	ThrottleBackoffMax time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering an
	// event whose poller died; while an event runs its poller extends it
	// every AckWait/3 (default 30s).
	AckWait time.Duration
	// FetchWait is how long one pull request waits for an event (default 5s).
	FetchWait time.Duration
	// IdleTimeout: a function's poller stops after this long without events
	// and with nothing pending (default 30s).
	IdleTimeout time.Duration
	// DiscoverInterval is how often the stream is scanned for functions with
	// queued events that have no poller here, e.g. enqueued by another
	// Flint process (default 2s).
	DiscoverInterval time.Duration
	// StatusTTL is how long invocation status records are kept (default 24h).
	StatusTTL time.Duration
	// DuplicateWindow is the publish de-duplication window by request id
	// (default 10m).
	DuplicateWindow time.Duration
	// Replicas of the streams and buckets (default 1); existing ones are
	// updated to it.
	Replicas int
	// Gate, when set, is asked before an event is accepted and before
	// pollers and the dispatcher pull: while the backbone cannot take
	// writes, Enqueue fails at once with its error (never a 202 for an
	// event not stored) and no event is taken to run.
	Gate writegate.Gate
	// WriteTimeout bounds the wait for the backbone to acknowledge an
	// accepted batch (default 5s): a backbone that cannot take writes is
	// reported within it.
	WriteTimeout time.Duration
	// MaxInlineEvent is the largest event message sent as is; larger
	// payloads go to an object store (default: the server's max_payload
	// less 4 KB of headroom).
	MaxInlineEvent int
	// MaxAckPendingPerFunction bounds the events of one function that are
	// delivered but not yet acknowledged, including those waiting for a
	// retry (default 10000).
	MaxAckPendingPerFunction int

	// AccountOf names the calling account of an API request. When nil,
	// every request belongs to DefaultAccount.
	AccountOf func(*http.Request) (string, error)
	// DefaultAccount is used when AccountOf is nil (default "000000000000").
	DefaultAccount string

	// Observer, when set, is told of retries and deliveries (metrics).
	Observer Observer
}

// Observer is told what the service does with events, for metrics. Its
// methods are called from the pollers' goroutines and must not block.
type Observer interface {
	// AsyncRetry: an event of function will be attempted again; reason is
	// "function_error" or "throttle" (a throttle or system error).
	AsyncRetry(function, reason string)
	// AsyncDelivery: a record of function was sent to a destination
	// ("on_success", "on_failure") or dead-letter target ("dlq"); err is
	// the delivery's error, nil when it was delivered.
	AsyncDelivery(function, destination string, err error)
}

type noObserver struct{}

func (noObserver) AsyncRetry(string, string)           {}
func (noObserver) AsyncDelivery(string, string, error) {}

// Validate reports whether cfg is usable (after defaults are applied).
func (c Config) Validate() error {
	switch {
	case c.JetStream == nil:
		return errors.New("asyncq: JetStream is required")
	case c.Invoker == nil:
		return errors.New("asyncq: Invoker is required")
	case c.Functions == nil:
		return errors.New("asyncq: Functions is required")
	case c.Concurrency < 0 || c.PerFunctionConcurrency < 0:
		return errors.New("asyncq: concurrency must not be negative")
	case c.ThrottleBackoffMin < 0 || c.ThrottleBackoffMax < c.ThrottleBackoffMin:
		return errors.New("asyncq: ThrottleBackoffMax must be >= ThrottleBackoffMin >= 0")
	}
	for _, d := range c.RetryDelays {
		if d < 0 {
			return errors.New("asyncq: negative retry delay")
		}
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.PerFunctionConcurrency == 0 {
		c.PerFunctionConcurrency = 8
	}
	if c.RetryDelays == nil {
		c.RetryDelays = []time.Duration{time.Minute, 2 * time.Minute}
	}
	// Either bound may be set alone (e.g. from a command-line flag).
	if c.ThrottleBackoffMax == 0 {
		c.ThrottleBackoffMax = max(5*time.Minute, c.ThrottleBackoffMin)
	}
	if c.ThrottleBackoffMin == 0 {
		c.ThrottleBackoffMin = min(time.Second, c.ThrottleBackoffMax)
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.DiscoverInterval == 0 {
		c.DiscoverInterval = 2 * time.Second
	}
	if c.StatusTTL == 0 {
		c.StatusTTL = 24 * time.Hour
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAckPendingPerFunction == 0 {
		c.MaxAckPendingPerFunction = 10000
	}
	if c.MaxInlineEvent == 0 {
		c.MaxInlineEvent = 512 << 10
		if c.JetStream != nil && c.JetStream.Conn() != nil {
			if mp := int(c.JetStream.Conn().MaxPayload()); mp > 8<<10 {
				c.MaxInlineEvent = mp - 4<<10
			}
		}
	}
	if c.DefaultAccount == "" {
		c.DefaultAccount = "000000000000"
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
}

// Names of the JetStream resources the service owns.
const (
	StreamName         = "FLINT_ASYNC"
	subjectPrefix      = "flint.async."
	configBucket       = "FLINT_EVENT_INVOKE_CONFIG"
	statusBucket       = "FLINT_INVOCATIONS"
	setupTimeout       = 30 * time.Second
	maxErrorMessageLen = 1024
)

// Service is the asynchronous invocation service. Enqueue, Handler and the
// stores are safe for concurrent use; Start and Close are called once each.
type Service struct {
	cfg     Config
	log     *slog.Logger
	stream  jetstream.Stream
	inbox   jetstream.Stream
	batcher *batcher
	// atomic: FLINT_ASYNC takes atomic batch publishes (dispatch.go).
	atomic  bool
	configs *configStore
	status  *statusStore
	large   *payloadStore
	queues  *queues.Store
	poller  *poller
}

// New creates (or updates) the stream, buckets and queue store on the
// backbone. Pollers do not run until Start.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	js := cfg.JetStream
	// The dispatcher stores a batch's events with one atomic batch
	// publish (one fsync) where the backbone allows it (nats-server ≥
	// 2.12); a server that refuses the setting gets the stream without.
	atomic := true
	stream, err := openWorkQueue(ctx, js, cfg, StreamName,
		"Flint asynchronous invocations (one subject per account and function)", subjectPrefix+">", true)
	if err != nil {
		atomic = false
		stream, err = openWorkQueue(ctx, js, cfg, StreamName,
			"Flint asynchronous invocations (one subject per account and function)", subjectPrefix+">", false)
	}
	if err != nil {
		return nil, err
	}
	inbox, err := openInbox(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	configs, err := openConfigStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	status, err := openStatusStore(ctx, js, cfg.Replicas, cfg.StatusTTL)
	if err != nil {
		return nil, err
	}
	large, err := openPayloadStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	qs, err := queues.Open(ctx, queues.Config{JetStream: js, Replicas: cfg.Replicas, Clock: cfg.Clock, DuplicateWindow: cfg.DuplicateWindow})
	if err != nil {
		return nil, fmt.Errorf("asyncq: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "asyncq"), stream: stream, inbox: inbox, configs: configs, status: status, large: large, queues: qs}
	s.atomic = atomic && stream.CachedInfo() != nil && stream.CachedInfo().Config.AllowAtomicPublish
	s.poller = newPoller(s)
	s.batcher = newBatcher(s)
	return s, nil
}

// Queues is the Flint queue store (destinations and dead-letter queues),
// for the CLI and for wiring.
func (s *Service) Queues() *queues.Store { return s.queues }

// Start starts the pollers. Events already queued (including those a
// crashed or closed process left un-acknowledged) are picked up.
func (s *Service) Start() error { return s.poller.start() }

// Close stops accepting (Enqueue calls already waiting for their batch are
// answered first) and taking new events, and waits for the running ones to
// finish. When ctx ends first, running invocations are cancelled and their
// events handed back to the queue un-acknowledged for redelivery; nothing
// is ever acknowledged without having run to an outcome. Close does not
// close the backbone.
func (s *Service) Close(ctx context.Context) error {
	s.batcher.close()
	return s.poller.close(ctx)
}

// Status returns the status record of one asynchronous invocation, or a
// ResourceNotFound *lambdaerr.Error.
func (s *Service) Status(ctx context.Context, requestID string) (*Status, error) {
	return s.status.lookup(ctx, requestID, s.batcher.queued)
}

// fnKey names one function (all its versions) of one account: the unit of
// per-function fairness and of consumers.
type fnKey struct{ account, name string }

func (k fnKey) subject() string  { return subjectPrefix + k.account + "." + k.name }
func (k fnKey) consumer() string { return "async_" + k.account + "_" + k.name }

// openWorkQueue creates or updates a durable work-queue stream (file
// storage, publish de-duplication, new messages refused when full).
func openWorkQueue(ctx context.Context, js jetstream.JetStream, cfg Config, name, desc, subject string, atomic bool) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:               name,
		Description:        desc,
		Subjects:           []string{subject},
		Retention:          jetstream.WorkQueuePolicy,
		Storage:            jetstream.FileStorage,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.DuplicateWindow,
		Discard:            jetstream.DiscardNew,
		AllowAtomicPublish: atomic,
	})
	if err != nil {
		return nil, fmt.Errorf("asyncq: stream %s: %w", name, err)
	}
	return st, nil
}
