package asyncq

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// event is one queued asynchronous invocation, the JSON body of a message
// on subject flint.async.<account>.<function>. The message is never changed
// once published: retries are redeliveries of the same message (the attempt
// counters live in the status record, see status.go), so the request id is
// the same on every attempt.
type event struct {
	RequestID string `json:"requestId"`
	Account   string `json:"account"`
	Region    string `json:"region,omitempty"`
	Function  string `json:"function"`
	// Qualifier is $LATEST, a version or an alias, as the caller named it
	// ($LATEST when unqualified); an alias is resolved when the event runs.
	Qualifier string `json:"qualifier"`
	// InvokedARN is the ARN the caller invoked, passed to the runtime
	// ("" in events queued before it existed: the version's ARN).
	InvokedARN string `json:"invokedArn,omitempty"`
	Payload    []byte `json:"payload"` // base64 in JSON
	// PayloadRef names the payload in the object store when it was too
	// large to travel inline (Payload is then empty).
	PayloadRef    string    `json:"payloadRef,omitempty"`
	ClientContext string    `json:"clientContext,omitempty"`
	TraceID       string    `json:"traceId,omitempty"`
	EnqueuedAt    time.Time `json:"enqueuedAt"`
	// Source, when set, is the request id of the invocation whose
	// destination this event is.
	Source string `json:"source,omitempty"`
}

func (e *event) key() fnKey { return fnKey{e.Account, e.Function} }

// clientContext is the event's client context as JSON. Events queued by
// an older Flint carry it still base64-encoded, as the caller sent it.
func (e *event) clientContext() string {
	cc := e.ClientContext
	if cc == "" || json.Valid([]byte(cc)) {
		return cc
	}
	if raw, err := base64.StdEncoding.DecodeString(cc); err == nil && json.Valid(raw) {
		return string(raw)
	}
	return cc
}

// decodeEvent parses a queued message body.
func decodeEvent(data []byte) (*event, error) {
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if ev.RequestID == "" || !validToken(ev.Account) || !validToken(ev.Function) || ev.Qualifier == "" {
		return nil, fmt.Errorf("decode event %q: missing or invalid fields", ev.RequestID)
	}
	return &ev, nil
}

// validToken reports whether s can be one token of a subject and part of a
// consumer name: Lambda function names ([a-zA-Z0-9-_]) and account ids.
func validToken(s string) bool {
	if s == "" || len(s) > 140 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Enqueue queues an InvocationType=Event invocation of fn, through
// req.Qualifier when set (an alias is kept as named and resolved, with its
// routing weights, when the event runs, so the alias's event invoke config
// applies), else fn's version. It returns nil
// only after JetStream has acknowledged the message holding the event (a
// batch shared with concurrent callers on the inbox stream, see batch.go,
// or for a large event its own message; file storage, and with the
// embedded server's sync_always the event is on disk), so an accepted
// event survives a crash. Its status answers "queued" from then on. Enqueueing the same RequestID twice
// within the de-duplication window queues it once. Refusals are
// *lambdaerr.Error: RequestEntityTooLarge when the event does not fit a backbone
// message, InvalidParameterValue for names that cannot be queued,
// ServiceException when the backbone is unavailable. An empty RequestID is
// replaced by a new UUID. Safe for concurrent use.
func (s *Service) Enqueue(ctx context.Context, fn *metadata.Function, req invocation.Request) error {
	if req.RequestID == "" {
		req.RequestID = newUUID()
	}
	qual := req.Qualifier
	if qual == "" {
		qual = fn.Version
	}
	if qual == "" {
		qual = metadata.LatestVersion
	}
	ev := &event{
		RequestID:     req.RequestID,
		Account:       fn.Account,
		Region:        fn.Region,
		Function:      fn.Name,
		Qualifier:     qual,
		InvokedARN:    req.InvokedFunctionARN,
		Payload:       req.Payload,
		ClientContext: req.ClientContext,
		TraceID:       req.TraceID,
		EnqueuedAt:    s.cfg.Clock.Now().UTC(),
	}
	return s.enqueueEvent(ctx, ev)
}

func (s *Service) enqueueEvent(ctx context.Context, ev *event) error {
	if !validToken(ev.Account) || !validToken(ev.Function) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "cannot queue function %q of account %q", ev.Function, ev.Account)
	}
	// A backbone that cannot take the write refuses now, not after a
	// timeout.
	if err := writegate.Check(s.cfg.Gate, writegate.Events); err != nil {
		return err
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", ev.RequestID, err)
	}
	if len(body) > s.cfg.MaxInlineEvent {
		// Store the payload first; the event published after it refers
		// to it, so an accepted event always finds its payload.
		big := *ev
		big.PayloadRef, big.Payload = ev.RequestID, nil
		if err := s.large.put(ctx, big.PayloadRef, ev.Payload); err != nil {
			return writegate.Describe("event "+ev.RequestID, err)
		}
		if body, err = json.Marshal(&big); err != nil {
			return fmt.Errorf("enqueue %s: %w", ev.RequestID, err)
		}
	}
	if len(body) <= maxBatchedEvent {
		// Group commit: one fsync for many events (batch.go). The
		// dispatcher records the queued status and wakes the poller.
		return s.batcher.accept(ctx, ev, body)
	}
	msg := nats.NewMsg(ev.key().subject())
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, ev.RequestID)
	pctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	err = s.publishIdempotent(pctx, msg)
	cancel()
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return lambdaerr.New(lambdaerr.RequestEntityTooLarge, "event %s is too large for the queue", ev.RequestID)
		}
		s.log.Warn("publish event", "requestId", ev.RequestID, "err", err)
		return writegate.Describe("event "+ev.RequestID, err)
	}
	// The event is accepted. The queued record is best effort: the
	// poller may already have written a newer one (Create keeps it).
	if err := s.status.create(ctx, newStatus(ev)); err != nil {
		s.log.Warn("record queued status", "requestId", ev.RequestID, "err", err)
	}
	s.poller.poke(ev.key())
	return nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// derivedUUID returns a UUID determined by parts, so that re-delivering an
// event's destinations after a crash publishes the same request ids and
// JetStream's de-duplication drops the copies.
func derivedUUID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
