// Package queues is Flint's stand-in for standard SQS queues as Lambda uses
// them: the targets of asynchronous-invocation destinations and dead-letter
// queues (ARN arn:aws:sqs:<region>:<account>:<name>). A queue exists as soon
// as something is sent to it. Messages live in the JetStream stream
// FLINT_QUEUES on subject flint.queue.<account>.<name>; they can be peeked,
// received (taken and deleted, each by exactly one receiver) and purged,
// through the Go API here (for the CLI) or the HTTP routes of Handler.
package queues

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the JetStream stream holding every Flint queue.
const StreamName = "FLINT_QUEUES"

const (
	subjectPrefix = "flint.queue."
	// MaxBatch bounds one Peek or Receive.
	MaxBatch = 100
	// attrPrefix marks message attributes among the message headers.
	attrPrefix = "Flint-Attr-"
	hdrID      = "Flint-Message-Id"
	hdrSent    = "Flint-Sent-At"
)

// Clock tells the time.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a Store.
type Config struct {
	JetStream jetstream.JetStream // required
	Replicas  int                 // default 1
	// MaxAge drops messages older than this (default 14 days, SQS's
	// longest retention).
	MaxAge time.Duration
	// DuplicateWindow de-duplicates sends with the same message id
	// (default 10m).
	DuplicateWindow time.Duration
	Clock           Clock
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.JetStream == nil {
		return errors.New("queues: JetStream is required")
	}
	if c.MaxAge < 0 || c.DuplicateWindow < 0 {
		return errors.New("queues: negative duration")
	}
	return nil
}

// Message is one message of a Flint queue.
type Message struct {
	// MessageID is unique per message (the sender's id when it gave one).
	MessageID string `json:"messageId"`
	// Sequence is the message's position in the backbone stream.
	Sequence uint64 `json:"sequence"`
	Body     string `json:"body"`
	// Attributes are SQS-style message attributes, e.g. RequestID,
	// ErrorCode and ErrorMessage on dead-lettered events.
	Attributes map[string]string `json:"attributes,omitempty"`
	SentAt     time.Time         `json:"sentTimestamp"`
}

// Store reads and writes Flint queues. Safe for concurrent use.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	clock  Clock
}

// Open creates (or updates) the queue stream and returns a Store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 14 * 24 * time.Hour
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	st, err := cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Flint queues (destinations and dead-letter queues)",
		Subjects:    []string{subjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("queues: stream %s: %w", StreamName, err)
	}
	return &Store{js: cfg.JetStream, stream: st, clock: cfg.Clock}, nil
}

// ValidName reports whether name can name a queue (SQS: 1-80 of
// [a-zA-Z0-9-_]); the account id must match the same alphabet.
func ValidName(name string) bool {
	if name == "" || len(name) > 80 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func subject(account, name string) (string, error) {
	if !ValidName(account) || !ValidName(name) {
		return "", fmt.Errorf("queues: invalid queue %q of account %q", name, account)
	}
	return subjectPrefix + account + "." + name, nil
}

// Send appends a message to queue name of account and returns after the
// backbone stored it. A non-empty messageID de-duplicates re-sends within
// the duplicate window; empty picks a fresh id.
func (s *Store) Send(ctx context.Context, account, name string, body []byte, attrs map[string]string, messageID string) error {
	subj, err := subject(account, name)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subj)
	m.Data = body
	if messageID == "" {
		messageID = nats.NewInbox()[len("_INBOX."):]
	}
	m.Header.Set(hdrID, messageID)
	m.Header.Set(jetstream.MsgIDHeader, messageID)
	m.Header.Set(hdrSent, strconv.FormatInt(s.clock.Now().UnixMilli(), 10))
	for k, v := range attrs {
		m.Header.Set(attrPrefix+k, v)
	}
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("queues: send to %s/%s: %w", account, name, err)
	}
	return nil
}

// Peek returns up to max (1..MaxBatch) of the oldest messages of the queue
// without removing them.
func (s *Store) Peek(ctx context.Context, account, name string, max int) ([]Message, error) {
	return s.take(ctx, "peek", account, name, max, false)
}

// Receive takes up to max (1..MaxBatch) of the oldest messages off the
// queue: each returned message has been deleted, and concurrent receivers
// never get the same message.
func (s *Store) Receive(ctx context.Context, account, name string, max int) ([]Message, error) {
	return s.take(ctx, "receive", account, name, max, true)
}

// take walks the queue's messages oldest first, collecting up to max of
// them, deleting each one it returns when remove is set.
func (s *Store) take(ctx context.Context, op, account, name string, max int, remove bool) ([]Message, error) {
	subj, err := subject(account, name)
	if err != nil {
		return nil, err
	}
	max = clampBatch(max)
	var out []Message
	seq := uint64(1)
	// Every round either collects a message, skips one another receiver
	// took, or ends; the stream is finite, so the loop is bounded.
	for len(out) < max {
		raw, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("queues: %s %s/%s: %w", op, account, name, err)
		}
		seq = raw.Sequence + 1
		if remove {
			if err := s.stream.DeleteMsg(ctx, raw.Sequence); err != nil {
				if isGone(err) {
					continue // another receiver took it
				}
				return out, fmt.Errorf("queues: %s %s/%s: %w", op, account, name, err)
			}
		}
		out = append(out, toMessage(raw))
	}
	return out, nil
}

// Delete removes one message by sequence; it reports false when the
// message was already gone.
func (s *Store) Delete(ctx context.Context, seq uint64) (bool, error) {
	if err := s.stream.DeleteMsg(ctx, seq); err != nil {
		if isGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("queues: delete %d: %w", seq, err)
	}
	return true, nil
}

// Purge deletes every message of the queue.
func (s *Store) Purge(ctx context.Context, account, name string) error {
	subj, err := subject(account, name)
	if err != nil {
		return err
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		return fmt.Errorf("queues: purge %s/%s: %w", account, name, err)
	}
	return nil
}

func clampBatch(n int) int {
	if n <= 0 {
		return 1
	}
	if n > MaxBatch {
		return MaxBatch
	}
	return n
}

func isGone(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.As(err, &apiErr) && (apiErr.Code == 404 || apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound)) ||
		strings.Contains(strings.ToLower(err.Error()), "no message found")
}

func toMessage(raw *jetstream.RawStreamMsg) Message {
	m := Message{Sequence: raw.Sequence, Body: string(raw.Data), SentAt: raw.Time}
	if raw.Header != nil {
		m.MessageID = raw.Header.Get(hdrID)
		if ms, err := strconv.ParseInt(raw.Header.Get(hdrSent), 10, 64); err == nil {
			m.SentAt = time.UnixMilli(ms).UTC()
		}
		for k, v := range raw.Header {
			if strings.HasPrefix(k, attrPrefix) && len(k) > len(attrPrefix) && len(v) > 0 {
				if m.Attributes == nil {
					m.Attributes = map[string]string{}
				}
				m.Attributes[k[len(attrPrefix):]] = v[0]
			}
		}
	}
	return m
}
