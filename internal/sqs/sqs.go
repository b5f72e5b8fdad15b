// Package sqs is Flint's SQS-compatible queue engine: standard queues with
// SQS's semantics (visibility timeouts, receive counts, redrive to a
// dead-letter queue, delays, retention) on the backbone, shared by every
// Flint server that uses the same JetStream. The HTTP protocols (JSON 1.0
// and query) live in internal/sqsapi; event source mappings in internal/esm.
//
// Storage. A queue's messages are the messages of subject
// flint.queue.<account>.<name> of stream FLINT_QUEUES — the very subject the
// async path's destinations and dead-letter queues write (package
// asyncq/queues), so a dead-lettered event is an SQS message. A queue's
// settings are a record in KV bucket FLINT_SQS_QUEUES; a subject that has
// messages but no record (a destination written before anyone created the
// queue) is adopted with SQS's default settings on first use.
//
// Receiving. Each queue has one durable pull consumer (sqs_<account>_<name>,
// explicit acks, AckWait = the queue's VisibilityTimeout). Every receiver on
// every server pulls from it, so JetStream hands each message to one
// receiver at a time:
//
//	sent ──▶ visible ──Receive──▶ in flight ──DeleteMessage──▶ deleted
//	            ▲                    │
//	            └──── visibility ────┘  (AckWait, or ChangeMessageVisibility = NAK with delay)
//	                  timeout             receive count > maxReceiveCount: moved to the DLQ
//
// A receipt handle is the delivery's JetStream ack subject; DeleteMessage
// deletes the stream message by sequence and acknowledges the delivery, so
// a message is gone for every server at once. ApproximateReceiveCount is
// the delivery count JetStream keeps.
//
// Delays. A message sent with a delay waits in stream FLINT_SQS_DELAY until
// it is due; a mover (one shared consumer, running on every server) then
// publishes it onto the queue.
package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/asyncq/queues"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the backbone resources the engine owns or shares.
const (
	QueueBucket  = "FLINT_SQS_QUEUES"
	DelayStream  = "FLINT_SQS_DELAY"
	queueSubject = "flint.queue."
	delaySubject = "flint.sqsdelay."
	delayCons    = "sqs_delay_mover"
)

// Limits SQS documents.
const (
	MaxBatch       = 10
	MaxWaitSeconds = 20
	MaxVisibility  = 43200
	MaxDelay       = 900
)

// Config configures the engine.
type Config struct {
	JetStream jetstream.JetStream // required
	Region    string              // default us-east-1
	Replicas  int                 // of the bucket and delay stream (default 1)
	Clock     func() time.Time    // default time.Now
	Logger    *slog.Logger        // default slog.Default()
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	if c.JetStream == nil {
		return errors.New("sqs: JetStream is required")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Service is the queue engine. Its methods are safe for concurrent use;
// Close is called once.
type Service struct {
	cfg    Config
	js     jetstream.JetStream
	nc     *nats.Conn
	stream jetstream.Stream // FLINT_QUEUES
	delay  jetstream.Stream // FLINT_SQS_DELAY
	kv     jetstream.KeyValue
	log    *slog.Logger

	mu        sync.Mutex                    // guards consumers, firstRecv and purging
	consumers map[string]jetstream.Consumer // by consumer name
	firstRecv map[uint64]int64              // stream seq → first receive (unix ms), this process's view
	purging   map[string]bool               // queues with a purge of acknowledged messages scheduled
	bg        context.Context               // background work (purges, the delay mover); done at Close
	stop      context.CancelFunc            // stops the delay mover
	done      chan struct{}                 // closed when the mover returned
}

// New opens (creating if needed) the queue stream, the delay stream and
// the settings bucket, and starts the delay mover.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js := cfg.JetStream
	// The queue stream is asyncq/queues's (the async path's destinations
	// write to it): open it the way that package does.
	if _, err := queues.Open(ctx, queues.Config{JetStream: js, Replicas: cfg.Replicas}); err != nil {
		return nil, fmt.Errorf("sqs: %w", err)
	}
	stream, err := js.Stream(ctx, queues.StreamName)
	if err != nil {
		return nil, fmt.Errorf("sqs: stream %s: %w", queues.StreamName, err)
	}
	delay, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DelayStream,
		Description: "Flint SQS messages sent with a delay, until they are due",
		Subjects:    []string{delaySubject + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("sqs: stream %s: %w", DelayStream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      QueueBucket,
		Description: "Flint SQS queue settings",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("sqs: bucket %s: %w", QueueBucket, err)
	}
	s := &Service{cfg: cfg, js: js, nc: js.Conn(), stream: stream, delay: delay, kv: kv,
		log: cfg.Logger.With("component", "sqs"), consumers: map[string]jetstream.Consumer{}, firstRecv: map[uint64]int64{}, purging: map[string]bool{}}
	if err := s.startMover(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the delay mover. It does not close the backbone.
func (s *Service) Close(ctx context.Context) error {
	s.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Region is the region queue ARNs name.
func (s *Service) Region() string { return s.cfg.Region }

func key(account, name string) string { return account + "." + name }

func consumerName(account, name string) string { return "sqs_" + account + "_" + name }

func checkName(account, name string) error {
	if !queues.ValidName(account) {
		return noQueue()
	}
	if !queues.ValidName(name) {
		return Errorf(InvalidParameterValue, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	return nil
}

// CreateQueue creates queue name of account with attrs, or returns the
// existing one when its settings match attrs (QueueNameExists otherwise).
func (s *Service) CreateQueue(ctx context.Context, account, name string, attrs map[string]string, tags map[string]string) (*Queue, error) {
	if err := checkName(account, name); err != nil {
		return nil, err
	}
	now := s.cfg.Clock().Unix()
	q := defaultQueue(account, name, now)
	if err := q.apply(attrs, s.cfg.Region); err != nil {
		return nil, err
	}
	if err := s.checkDLQ(ctx, q); err != nil {
		return nil, err
	}
	q.Tags = tags
	b, _ := json.Marshal(q)
	if _, err := s.kv.Create(ctx, key(account, name), b); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("sqs: create queue %s/%s: %w", account, name, err)
		}
		old, err := s.GetQueue(ctx, account, name)
		if err != nil {
			return nil, err
		}
		if !old.sameSettings(attrs, s.cfg.Region) {
			return nil, Errorf(QueueNameExists, "A queue already exists with the same name and a different value for attribute(s).")
		}
		return old, s.ensureConsumer(ctx, old)
	}
	return q, s.ensureConsumer(ctx, q)
}

// checkDLQ verifies that a redrive target exists, as SQS does.
func (s *Service) checkDLQ(ctx context.Context, q *Queue) error {
	if q.RedrivePolicy == nil {
		return nil
	}
	_, acct, name, _ := ParseARN(q.RedrivePolicy.DeadLetterTargetArn)
	if acct == q.Account && name == q.Name {
		return Errorf(InvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter target can not be the queue itself.", q.RedrivePolicy.DeadLetterTargetArn)
	}
	if _, err := s.GetQueue(ctx, acct, name); err != nil {
		if e := AsError(err); e.Code == QueueDoesNotExist {
			return Errorf(InvalidParameterValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", q.RedrivePolicy.DeadLetterTargetArn)
		}
		return err
	}
	return nil
}

// GetQueue returns the settings of queue name of account, adopting a
// subject that has messages but no record (written by the async path).
// It returns QueueDoesNotExist when there is neither.
func (s *Service) GetQueue(ctx context.Context, account, name string) (*Queue, error) {
	if !queues.ValidName(account) || !queues.ValidName(name) {
		return nil, noQueue()
	}
	q, _, err := s.getRecord(ctx, account, name)
	if err == nil {
		return q, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	// Adopt a queue the async path wrote to.
	if _, err := s.stream.GetLastMsgForSubject(ctx, queueSubject+account+"."+name); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, noQueue()
		}
		return nil, fmt.Errorf("sqs: look up queue %s/%s: %w", account, name, err)
	}
	q = defaultQueue(account, name, s.cfg.Clock().Unix())
	b, _ := json.Marshal(q)
	if _, err := s.kv.Create(ctx, key(account, name), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("sqs: adopt queue %s/%s: %w", account, name, err)
	}
	if q, _, err = s.getRecord(ctx, account, name); err != nil {
		return nil, fmt.Errorf("sqs: adopt queue %s/%s: %w", account, name, err)
	}
	return q, s.ensureConsumer(ctx, q)
}

func (s *Service) getRecord(ctx context.Context, account, name string) (*Queue, uint64, error) {
	e, err := s.kv.Get(ctx, key(account, name))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, 0, jetstream.ErrKeyNotFound
		}
		return nil, 0, fmt.Errorf("sqs: queue %s/%s: %w", account, name, err)
	}
	var q Queue
	if err := json.Unmarshal(e.Value(), &q); err != nil {
		return nil, 0, fmt.Errorf("sqs: queue %s/%s: corrupt record: %w", account, name, err)
	}
	return &q, e.Revision(), nil
}

// SetAttributes changes settable attributes of a queue.
func (s *Service) SetAttributes(ctx context.Context, account, name string, attrs map[string]string) error {
	if _, err := s.GetQueue(ctx, account, name); err != nil {
		return err
	}
	for range 10 { // optimistic concurrency: retry on a racing update
		q, rev, err := s.getRecord(ctx, account, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return noQueue()
		} else if err != nil {
			return err
		}
		if err := q.apply(attrs, s.cfg.Region); err != nil {
			return err
		}
		if err := s.checkDLQ(ctx, q); err != nil {
			return err
		}
		q.Modified = s.cfg.Clock().Unix()
		b, _ := json.Marshal(q)
		if _, err := s.kv.Update(ctx, key(account, name), b, rev); err != nil {
			if isWrongRev(err) {
				continue
			}
			return fmt.Errorf("sqs: set attributes of %s/%s: %w", account, name, err)
		}
		return s.ensureConsumer(ctx, q)
	}
	return fmt.Errorf("sqs: set attributes of %s/%s: too many concurrent updates", account, name)
}

func isWrongRev(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// ListQueues returns the names of account's queues that start with
// prefix, sorted.
func (s *Service) ListQueues(ctx context.Context, account, prefix string) ([]string, error) {
	if !queues.ValidName(account) {
		return nil, nil
	}
	seen := map[string]bool{}
	lister, err := s.kv.ListKeysFiltered(ctx, account+".>")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("sqs: list queues: %w", err)
	}
	if lister != nil {
		for k := range lister.Keys() {
			seen[strings.TrimPrefix(k, account+".")] = true
		}
	}
	// Queues the async path wrote to and no one created yet.
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(queueSubject+account+".>"))
	if err != nil {
		return nil, fmt.Errorf("sqs: list queues: %w", err)
	}
	for subj := range info.State.Subjects {
		seen[strings.TrimPrefix(subj, queueSubject+account+".")] = true
	}
	var out []string
	for n := range seen {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// DeleteQueue deletes a queue, its messages and its consumer.
func (s *Service) DeleteQueue(ctx context.Context, account, name string) error {
	if _, err := s.GetQueue(ctx, account, name); err != nil {
		return err
	}
	cn := consumerName(account, name)
	if err := s.stream.DeleteConsumer(ctx, cn); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("sqs: delete queue %s/%s: %w", account, name, err)
	}
	s.mu.Lock()
	delete(s.consumers, cn)
	s.mu.Unlock()
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(queueSubject+account+"."+name)); err != nil {
		return fmt.Errorf("sqs: delete queue %s/%s: %w", account, name, err)
	}
	if err := s.delay.Purge(ctx, jetstream.WithPurgeSubject(delaySubject+account+"."+name)); err != nil {
		return fmt.Errorf("sqs: delete queue %s/%s: %w", account, name, err)
	}
	if err := s.kv.Delete(ctx, key(account, name)); err != nil {
		return fmt.Errorf("sqs: delete queue %s/%s: %w", account, name, err)
	}
	return nil
}

// PurgeQueue deletes every message of a queue, delayed ones included.
func (s *Service) PurgeQueue(ctx context.Context, account, name string) error {
	if _, err := s.GetQueue(ctx, account, name); err != nil {
		return err
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(queueSubject+account+"."+name)); err != nil {
		return fmt.Errorf("sqs: purge %s/%s: %w", account, name, err)
	}
	if err := s.delay.Purge(ctx, jetstream.WithPurgeSubject(delaySubject+account+"."+name)); err != nil {
		return fmt.Errorf("sqs: purge %s/%s: %w", account, name, err)
	}
	return nil
}

// ensureConsumer creates or updates the queue's consumer so that its
// AckWait is the queue's visibility timeout.
func (s *Service) ensureConsumer(ctx context.Context, q *Queue) error {
	_, err := s.consumer(ctx, q, true)
	return err
}

func ackWait(q *Queue) time.Duration {
	return max(time.Duration(q.VisibilityTimeout)*time.Second, time.Second)
}

// consumer returns the queue's consumer, from this process's cache unless
// refresh is set or its AckWait is stale.
func (s *Service) consumer(ctx context.Context, q *Queue, refresh bool) (jetstream.Consumer, error) {
	cn := consumerName(q.Account, q.Name)
	if !refresh {
		s.mu.Lock()
		c := s.consumers[cn]
		s.mu.Unlock()
		if c != nil && c.CachedInfo().Config.AckWait == ackWait(q) {
			return c, nil
		}
	}
	c, err := s.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cn,
		Description:   "SQS receivers of queue " + q.Account + "/" + q.Name,
		FilterSubject: queueSubject + q.Account + "." + q.Name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait(q),
		MaxDeliver:    -1,
		MaxAckPending: 120000, // SQS's in-flight limit of a standard queue
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("sqs: consumer of %s/%s: %w", q.Account, q.Name, err)
	}
	s.mu.Lock()
	s.consumers[cn] = c
	s.mu.Unlock()
	return c, nil
}

// Counts are a queue's approximate message counts.
type Counts struct {
	Visible, InFlight, Delayed int64
}

// Count returns a queue's approximate message counts.
func (s *Service) Count(ctx context.Context, q *Queue) (Counts, error) {
	c, err := s.consumer(ctx, q, false)
	if err != nil {
		return Counts{}, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return Counts{}, fmt.Errorf("sqs: count %s/%s: %w", q.Account, q.Name, err)
	}
	var n Counts
	n.InFlight = int64(info.NumAckPending) - int64(info.NumRedelivered)
	n.Visible = int64(info.NumPending) + int64(info.NumRedelivered)
	if n.InFlight < 0 {
		n.InFlight = 0
	}
	di, err := s.delay.Info(ctx, jetstream.WithSubjectFilter(delaySubject+q.Account+"."+q.Name))
	if err != nil {
		return Counts{}, fmt.Errorf("sqs: count %s/%s: %w", q.Account, q.Name, err)
	}
	for _, v := range di.State.Subjects {
		n.Delayed += int64(v)
	}
	return n, nil
}

// Attributes returns every attribute GetQueueAttributes reports.
func (s *Service) Attributes(ctx context.Context, q *Queue) (map[string]string, error) {
	n, err := s.Count(ctx, q)
	if err != nil {
		return nil, err
	}
	m := q.settable()
	m["QueueArn"] = ARN(s.cfg.Region, q.Account, q.Name)
	m["CreatedTimestamp"] = fmt.Sprint(q.Created)
	m["LastModifiedTimestamp"] = fmt.Sprint(q.Modified)
	m["ApproximateNumberOfMessages"] = fmt.Sprint(n.Visible)
	m["ApproximateNumberOfMessagesNotVisible"] = fmt.Sprint(n.InFlight)
	m["ApproximateNumberOfMessagesDelayed"] = fmt.Sprint(n.Delayed)
	return m, nil
}

// KnownAttribute reports whether GetQueueAttributes knows name.
func KnownAttribute(name string) bool {
	if _, ok := intAttrs[name]; ok {
		return true
	}
	for _, a := range readOnlyAttrs {
		if a == name {
			return true
		}
	}
	return name == "All" || name == "RedrivePolicy" || name == "Policy" || ignoredAttrs[name]
}
