// Package logstore keeps every invocation's log (the START ... END ...
// REPORT framing the worker writes around the function's output) per
// function in a JetStream stream with bounded retention, and reads it back
// for `flint logs FUNCTION [--follow]`.
//
// Entries are group-committed: Append queues an entry in memory and a
// writer goroutine publishes what has gathered, after at most BatchDelay,
// as one message per function on the subject
// flint.logs.<account>.<function>. Each message therefore costs the
// backbone one (fsynced) write however many invocations it carries. A
// message is a batch of entries, each with its request ID and the time it
// was appended (batch.go has the format); messages written before
// batching hold one entry and are still read. Retention is the stream's:
// messages older than MaxAge, beyond MaxMsgsPerSubject per function, or
// beyond MaxBytes in total are discarded oldest first.
package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintdev/flint/internal/clock"
	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Config's zero fields.
const (
	DefaultStream            = "FLINT_LOGS"
	DefaultMaxAge            = 7 * 24 * time.Hour
	DefaultMaxBytes          = 1 << 30 // 1 GiB, all functions together
	DefaultMaxMsgsPerSubject = 10000   // messages (batches) kept per function
	DefaultMaxEntryBytes     = 256 << 10
	DefaultMaxPending        = 16384    // entries queued or in flight
	DefaultMaxPendingBytes   = 64 << 20 // their bytes
	DefaultBatchDelay        = 20 * time.Millisecond
	DefaultStallWait         = 200 * time.Millisecond
	DefaultReadIdle          = 5 * time.Second
)

// HeaderRequestID is the message header holding the request ID of an
// old-format (single-entry) message.
const HeaderRequestID = "Flint-Request-Id"

// subjectPrefix is followed by <account>.<function>.
const subjectPrefix = "flint.logs."

// Publisher limits of the writer goroutine.
const (
	maxBatchesInFlight = 64               // published, not yet acknowledged
	writerStallWait    = 10 * time.Second // then the batch is dropped
	ackTimeout         = 30 * time.Second // an unanswered batch counts as dropped
)

// ErrStalled is wrapped by Append's error when an entry is dropped because
// MaxPending entries (or MaxPendingBytes) were outstanding for StallWait.
var ErrStalled = errors.New("logstore: append stalled, entry dropped")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("logstore: store closed")

// Config configures a Store. Zero fields take the defaults above.
type Config struct {
	// JS is the backbone's JetStream context. Required.
	JS jetstream.JetStream
	// Stream is the JetStream stream name.
	Stream string
	// MaxAge is how long an entry is kept.
	MaxAge time.Duration
	// MaxBytes bounds the whole stream (all functions).
	MaxBytes int64
	// MaxMsgsPerSubject bounds the messages kept per function. A message
	// is a batch of one or more entries (many under load), so at least
	// this many entries are kept, unless MaxAge or MaxBytes remove them.
	MaxMsgsPerSubject int64
	// MaxEntryBytes bounds one entry; a longer log keeps its head and its
	// tail (where the END and REPORT lines are) around a truncation marker.
	// A batch message is at most MaxEntryBytes plus 2 KiB, which must stay
	// below the server's max payload (1 MiB by default).
	MaxEntryBytes int
	// MaxPending bounds the entries appended but not yet acknowledged by
	// the server (queued for the writer or in flight).
	MaxPending int
	// MaxPendingBytes bounds the bytes of those entries.
	MaxPendingBytes int
	// BatchDelay is how long the writer lets entries gather after the
	// first one arrives before publishing them (Flush and full batches
	// do not wait). Negative: publish at once.
	BatchDelay time.Duration
	// StallWait is the longest Append blocks when MaxPending entries (or
	// MaxPendingBytes) are outstanding; after it the entry is dropped with
	// an error wrapping ErrStalled.
	StallWait time.Duration
	// ReadIdle ends a non-following Read that waits this long for an entry
	// it expected (only when retention or Purge removes entries while they
	// are being read).
	ReadIdle time.Duration
	// Replicas of the stream (default 1); an existing stream is updated.
	Replicas int
	// Gate, when set, is asked before each batch is published: while it
	// refuses logs (the backbone is short of space, or unavailable) the
	// batch is dropped at once and counted in Dropped, so logs give way
	// before events do and never wait on a backbone that cannot write.
	Gate writegate.Gate
	// Clock stamps entries and times BatchDelay and StallWait;
	// clock.Real when nil.
	Clock clock.Clock
	// Logger; a discarding logger when nil.
	Logger *slog.Logger
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.JS == nil {
		return errors.New("logstore: config needs a JetStream context")
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.MaxMsgsPerSubject < 0 || c.MaxEntryBytes < 0 || c.MaxPendingBytes < 0 {
		return errors.New("logstore: negative limit")
	}
	if c.MaxEntryBytes != 0 && c.MaxEntryBytes < 1024 {
		return errors.New("logstore: MaxEntryBytes must be at least 1024")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxMsgsPerSubject == 0 {
		c.MaxMsgsPerSubject = DefaultMaxMsgsPerSubject
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.BatchDelay == 0 {
		c.BatchDelay = DefaultBatchDelay
	}
	if c.StallWait <= 0 {
		c.StallWait = DefaultStallWait
	}
	if c.ReadIdle <= 0 {
		c.ReadIdle = DefaultReadIdle
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Entry is one invocation's log.
type Entry struct {
	// Time is when the entry was appended (the end of the invocation); for
	// entries stored before batching, when the backbone stored it.
	Time      time.Time
	RequestID string
	Data      []byte
}

// Store appends and reads function logs. It is safe for concurrent use.
// Its writer goroutine runs from New until Close.
type Store struct {
	cfg      Config
	stream   jetstream.Stream
	pub      jetstream.JetStream // own context: its async publish state is ours alone
	log      *slog.Logger
	batchMax int // payload bytes of one batch message

	mu      sync.Mutex        // guards the fields below; never held while calling NATS
	open    map[string]*batch // per subject, being filled
	full    []*batch          // sealed (no room left), in sealing order
	waiters []chan struct{}   // Flushes waiting for the queue to be published
	pendN   int               // entries appended, not yet acknowledged or failed
	pendBy  int               // their bytes
	space   chan struct{}     // closed and replaced when pending shrinks or on Close
	closed  bool

	kick       chan struct{} // cap 1: entries are queued
	hurry      chan struct{} // cap 1: publish without waiting BatchDelay
	stop       chan struct{} // closed by Close
	writerDone chan struct{} // closed when the writer has published all and exited

	dropped  atomic.Int64 // entries appended but not stored
	gateWarn atomic.Int64 // unix nanos of the last "logs dropped" warning
	cleanup  sync.Once    // of the publisher, by Close
}

// New creates or updates the log stream (file storage, limits retention,
// discarding the oldest messages), starts the writer and returns a Store.
// Close stops it.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:        cfg,
		log:        cfg.Logger,
		batchMax:   cfg.MaxEntryBytes + 2048,
		open:       map[string]*batch{},
		space:      make(chan struct{}),
		kick:       make(chan struct{}, 1),
		hurry:      make(chan struct{}, 1),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	pub, err := jetstream.New(cfg.JS.Conn(),
		jetstream.WithPublishAsyncMaxPending(maxBatchesInFlight),
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			s.settle(m, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			s.settle(m, err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	s.pub = pub
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Description:       "Flint function logs, batches of invocations' logs per function",
		Subjects:          []string{subjectPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxBytes:          cfg.MaxBytes,
		MaxMsgsPerSubject: cfg.MaxMsgsPerSubject,
		MaxMsgSize:        int32(cfg.MaxEntryBytes + 4096), // a batch plus headers
		AllowDirect:       true,
		Replicas:          max(1, cfg.Replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: create stream %s: %w", cfg.Stream, err)
	}
	s.stream = stream
	go s.run()
	return s, nil
}

// Dropped is the number of entries appended but not stored: dropped by
// Append after stalling (it returned an error), refused by the server, or
// not acknowledged in time.
func (s *Store) Dropped() int64 { return s.dropped.Load() }

// validToken reports whether s is usable as one subject token: Lambda
// function names and account IDs are [A-Za-z0-9_-].
func validToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// subject returns the subject of a function's log, or an error when a name
// could not be a subject token (wildcards, dots, spaces).
func subject(account, function string) (string, error) {
	if !validToken(account) {
		return "", fmt.Errorf("logstore: bad account %q", account)
	}
	if !validToken(function) {
		return "", fmt.Errorf("logstore: bad function name %q", function)
	}
	return subjectPrefix + account + "." + function, nil
}

// truncate keeps data within max bytes: its head and its tail around a
// marker saying how much was cut.
func truncate(data []byte, max int) []byte {
	if len(data) <= max {
		return data
	}
	marker := "\n... [flint: " + strconv.Itoa(len(data)-max) + " bytes of log truncated] ...\n"
	// The marker's own length is part of max, so a little more is cut than
	// the marker says; it stays within a few bytes.
	keep := max - len(marker)
	head := keep / 2
	tail := keep - head
	out := make([]byte, 0, max)
	out = append(out, data[:head]...)
	out = append(out, marker...)
	return append(out, data[len(data)-tail:]...)
}

// Append stores one invocation's log for a function. It queues the entry
// (copying data) for the writer goroutine and returns without waiting for
// the server, so the invocation path is never held up by disk syncs;
// entries appended within BatchDelay of each other share one message and
// one disk sync. When MaxPending entries (or MaxPendingBytes) are already
// outstanding it blocks up to StallWait (or until ctx is done) and then
// drops the entry with an error wrapping ErrStalled. A failure the server
// reports later is logged and counted in Dropped. Logs longer than
// MaxEntryBytes are truncated (head and tail kept), request IDs beyond
// 1 KiB cut. After Close it returns ErrClosed.
func (s *Store) Append(ctx context.Context, account, function, requestID string, data []byte) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	return s.append(ctx, subj, function, requestID, data)
}

// AppendRecord stores one invocation's record (a small JSON document of its
// timing, see internal/records) for a function, beside its log: on a
// subject of its own in the same stream, with the same retention (MaxAge,
// MaxMsgsPerSubject per function, MaxBytes) and the same group commit and
// limits as Append. ReadRecords reads them back; Purge removes them with
// the logs.
func (s *Store) AppendRecord(ctx context.Context, account, function, requestID string, data []byte) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	return s.append(ctx, subj+recordsSuffix, function, requestID, data)
}

// recordsSuffix turns a function's log subject into its records' subject
// (function names have no dots, so no log subject ends with it).
const recordsSuffix = ".invocations"

func (s *Store) append(ctx context.Context, subj, function, requestID string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("logstore: append %s %s: %w", function, requestID, err)
	}
	data = truncate(data, s.cfg.MaxEntryBytes)
	if len(requestID) > maxRequestIDBytes {
		requestID = requestID[:maxRequestIDBytes]
	}
	if err := s.enqueue(ctx, subj, requestID, data); err != nil {
		return fmt.Errorf("logstore: append %s %s: %w", function, requestID, err)
	}
	return nil
}

// Flush waits until every entry appended before it is acknowledged by the
// server (or failed), or ctx is done. It does not wait out BatchDelay.
func (s *Store) Flush(ctx context.Context) error {
	w := make(chan struct{})
	s.mu.Lock()
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	signal(s.hurry)
	signal(s.kick)
	select {
	case <-w:
	case <-s.writerDone: // closed: everything queued was published
	case <-ctx.Done():
		return s.flushErr(ctx)
	}
	select {
	case <-s.pub.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return s.flushErr(ctx)
	}
}

func (s *Store) flushErr(ctx context.Context) error {
	s.mu.Lock()
	n := s.pendN
	s.mu.Unlock()
	return fmt.Errorf("logstore: flush: %w (%d entries pending)", ctx.Err(), n)
}

// Close stops accepting appends, publishes what is queued and waits for
// the server's acknowledgements (bounded by ctx), then releases the
// publisher. Appends after Close fail with ErrClosed. Close may be called
// again (e.g. after its ctx expired) to wait once more.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.space) // wake stalled appends: they fail with ErrClosed
		s.space = make(chan struct{})
		close(s.stop)
	}
	s.mu.Unlock()
	select {
	case <-s.writerDone:
	case <-ctx.Done():
		return s.flushErr(ctx)
	}
	var err error
	select {
	case <-s.pub.PublishAsyncComplete():
	case <-ctx.Done():
		err = s.flushErr(ctx)
	}
	s.cleanup.Do(s.pub.CleanupPublisher)
	return err
}

// Purge removes every stored entry of a function (when it is deleted).
// Appends still outstanding are flushed first (bounded by ctx); entries
// appended after Purge returns, by invocations still running, stay until
// retention removes them.
func (s *Store) Purge(ctx context.Context, account, function string) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	_ = s.Flush(ctx)
	for _, sj := range []string{subj, subj + recordsSuffix} {
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(sj)); err != nil {
			return fmt.Errorf("logstore: purge %s/%s: %w", account, function, err)
		}
	}
	return nil
}
