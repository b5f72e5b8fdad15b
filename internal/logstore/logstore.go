// Package logstore keeps every invocation's log (the START ... END ...
// REPORT framing the worker writes around the function's output) per
// function in a JetStream stream with bounded retention, and reads it back
// for `flint logs FUNCTION [--follow]`.
//
// One invocation is one message on the subject
// flint.logs.<account>.<function>, carrying the request ID in a header and
// stamped by the server with the time it was stored. Retention is the
// stream's: entries older than MaxAge, beyond MaxMsgsPerSubject per
// function, or beyond MaxBytes in total are discarded oldest first.
package logstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Config's zero fields.
const (
	DefaultStream            = "FLINT_LOGS"
	DefaultMaxAge            = 7 * 24 * time.Hour
	DefaultMaxBytes          = 1 << 30 // 1 GiB, all functions together
	DefaultMaxMsgsPerSubject = 10000   // invocations kept per function
	DefaultMaxEntryBytes     = 256 << 10
	DefaultMaxPending        = 4096
	DefaultStallWait         = 200 * time.Millisecond
	DefaultReadIdle          = 5 * time.Second
)

// HeaderRequestID is the message header holding an entry's request ID.
const HeaderRequestID = "Flint-Request-Id"

// subjectPrefix is followed by <account>.<function>.
const subjectPrefix = "flint.logs."

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
	// MaxMsgsPerSubject bounds the entries kept per function.
	MaxMsgsPerSubject int64
	// MaxEntryBytes bounds one entry; a longer log keeps its head and its
	// tail (where the END and REPORT lines are) around a truncation marker.
	// It must stay below the server's max payload (1 MiB by default).
	MaxEntryBytes int
	// MaxPending bounds appends sent but not yet acknowledged.
	MaxPending int
	// StallWait is the longest Append blocks when MaxPending appends are
	// outstanding; after it the entry is dropped with an error.
	StallWait time.Duration
	// ReadIdle ends a non-following Read that waits this long for an entry
	// it expected (only when retention or Purge removes entries while they
	// are being read).
	ReadIdle time.Duration
	// Logger; a discarding logger when nil.
	Logger *slog.Logger
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.JS == nil {
		return errors.New("logstore: config needs a JetStream context")
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.MaxMsgsPerSubject < 0 || c.MaxEntryBytes < 0 {
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
	if c.StallWait <= 0 {
		c.StallWait = DefaultStallWait
	}
	if c.ReadIdle <= 0 {
		c.ReadIdle = DefaultReadIdle
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Entry is one invocation's log.
type Entry struct {
	// Time is when the backbone stored the entry (end of the invocation).
	Time      time.Time
	RequestID string
	Data      []byte
}

// Store appends and reads function logs. It is safe for concurrent use.
type Store struct {
	cfg    Config
	stream jetstream.Stream
	pub    jetstream.JetStream // own context: its async publish state is ours alone
	log    *slog.Logger

	dropped atomic.Int64 // appends the server did not acknowledge
}

// New creates or updates the log stream (file storage, limits retention,
// discarding the oldest entries) and returns a Store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, log: cfg.Logger}
	pub, err := jetstream.New(cfg.JS.Conn(),
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncErrHandler(s.publishFailed),
	)
	if err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	s.pub = pub
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.Stream,
		Description:       "Flint function logs, one message per invocation",
		Subjects:          []string{subjectPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxBytes:          cfg.MaxBytes,
		MaxMsgsPerSubject: cfg.MaxMsgsPerSubject,
		MaxMsgSize:        int32(cfg.MaxEntryBytes + 4096), // room for headers
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: create stream %s: %w", cfg.Stream, err)
	}
	s.stream = stream
	return s, nil
}

func (s *Store) publishFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	s.dropped.Add(1)
	s.log.Warn("function log entry lost", "subject", m.Subject,
		"requestId", m.Header.Get(HeaderRequestID), "err", err)
}

// Dropped is the number of appends that were sent but not stored (the
// server refused them or did not answer in time).
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

// Append stores one invocation's log for a function. It publishes
// asynchronously and does not wait for the server's acknowledgement, so
// the invocation path is never held up by disk syncs: it returns once the
// message is handed to the connection. When MaxPending appends are
// already outstanding it blocks up to StallWait and then drops the entry
// with an error. A failure the server reports later is logged and counted
// in Dropped. Logs longer than MaxEntryBytes are truncated (head and tail
// kept). ctx is only checked before publishing.
func (s *Store) Append(ctx context.Context, account, function, requestID string, data []byte) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("logstore: append %s %s: %w", function, requestID, err)
	}
	m := nats.NewMsg(subj)
	m.Header.Set(HeaderRequestID, requestID)
	m.Data = truncate(data, s.cfg.MaxEntryBytes)
	_, err = s.pub.PublishMsgAsync(m,
		jetstream.WithExpectStream(s.cfg.Stream),
		jetstream.WithStallWait(s.cfg.StallWait))
	if err != nil {
		s.dropped.Add(1)
		return fmt.Errorf("logstore: append %s %s: %w", function, requestID, err)
	}
	return nil
}

// Flush waits until every append made so far is acknowledged (or failed),
// or ctx is done.
func (s *Store) Flush(ctx context.Context) error {
	select {
	case <-s.pub.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("logstore: flush: %w (%d appends pending)", ctx.Err(), s.pub.PublishAsyncPending())
	}
}

// Close flushes outstanding appends (bounded by ctx) and releases the
// publisher. Appends after Close are not allowed.
func (s *Store) Close(ctx context.Context) error {
	err := s.Flush(ctx)
	s.pub.CleanupPublisher()
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
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		return fmt.Errorf("logstore: purge %s/%s: %w", account, function, err)
	}
	return nil
}
