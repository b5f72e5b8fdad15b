package asyncq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/nats-io/nats.go/jetstream"
)

// Invocation states as the status API reports them.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateExpired   = "expired"
)

// maxStoredResponse bounds the response kept in a status record; larger
// responses are recorded as truncated.
const maxStoredResponse = 256 << 10

// Status is the record of one asynchronous invocation (Flint's extension,
// GET /flint/v1/invocations/{requestId}). It doubles as the event's attempt
// ledger: the queued message never changes, so the counters that drive the
// retry policy live here.
type Status struct {
	RequestID string `json:"requestId"`
	Account   string `json:"account"`
	Function  string `json:"function"`
	Qualifier string `json:"qualifier"`
	Status    string `json:"status"`
	// Attempts counts delivery attempts that were handed to the Invoker:
	// throttled ones too (see Throttles), and one a crash interrupted.
	// It is the record's approximateInvokeCount.
	Attempts   int        `json:"attempts"`
	EnqueuedAt time.Time  `json:"enqueuedAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// NextAttemptAt is when a queued retry becomes due.
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
	// Response is the function's response (or error document) of the last
	// attempt that ran, as JSON (a JSON string when it was not JSON).
	Response json.RawMessage `json:"response,omitempty"`
	Error    *StatusError    `json:"error,omitempty"`

	// FunctionErrors counts attempts that ended in a function error;
	// Throttles counts throttles and system errors (back-off exponent).
	FunctionErrors  int    `json:"functionErrors"`
	Throttles       int    `json:"throttles"`
	FunctionError   string `json:"functionError,omitempty"` // of the last attempt
	ExecutedVersion string `json:"executedVersion,omitempty"`
	// Delivered is set once destinations and the dead-letter queue have
	// been served for a finished invocation.
	Delivered bool `json:"delivered,omitempty"`
}

// StatusError describes why the last attempt failed.
type StatusError struct {
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

func (st *Status) terminal() bool {
	return st.Status == StateSucceeded || st.Status == StateFailed || st.Status == StateExpired
}

func newStatus(ev *event) *Status {
	return &Status{
		RequestID: ev.RequestID, Account: ev.Account, Function: ev.Function,
		Qualifier: ev.Qualifier, Status: StateQueued, EnqueuedAt: ev.EnqueuedAt,
	}
}

// statusStore keeps Status records in a KV bucket keyed by request id, with
// a bucket-wide TTL. Safe for concurrent use. The dispatcher creates the
// queued record (Create: never over a newer one); after that only the
// poller holding the event's message writes it.
type statusStore struct{ kv jetstream.KeyValue }

func openStatusStore(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration) (*statusStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      statusBucket,
		Description: "Flint asynchronous invocation status by request id",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("asyncq: bucket %s: %w", statusBucket, err)
	}
	return &statusStore{kv: kv}, nil
}

// statusKey maps a request id to a KV key; ids that are not valid keys
// are hex-encoded.
func statusKey(id string) string {
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Sprintf("x%x", id)
		}
	}
	if id == "" {
		return "x"
	}
	return id
}

// create stores st unless a record for the id exists.
func (s *statusStore) create(ctx context.Context, st *Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, statusKey(st.RequestID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

func (s *statusStore) put(ctx context.Context, st *Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, statusKey(st.RequestID), b); err != nil {
		return fmt.Errorf("status %s: %w", st.RequestID, err)
	}
	return nil
}

// get returns the record, or nil when there is none.
func (s *statusStore) get(ctx context.Context, id string) (*Status, error) {
	e, err := s.kv.Get(ctx, statusKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", id, err)
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("status %s: %w", id, err)
	}
	return &st, nil
}

// lookup returns the record of id. An event accepted by this process whose
// batch is not dispatched yet has no record: pending (may be nil) supplies
// its "queued" status.
func (s *statusStore) lookup(ctx context.Context, id string, pending func(string) *Status) (*Status, error) {
	st, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if st == nil && pending != nil {
		st = pending(id)
	}
	if st == nil {
		return nil, lambdaerr.New(lambdaerr.ResourceNotFound, "no asynchronous invocation with request id %s", id)
	}
	return st, nil
}

// jsonOrString returns b when it is valid JSON, else b as a JSON string;
// nil for empty input.
func jsonOrString(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// errorOf extracts errorType/errorMessage from a function error document.
func errorOf(payload []byte, fallbackType string) *StatusError {
	var doc struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	_ = json.Unmarshal(payload, &doc)
	if doc.ErrorType == "" {
		doc.ErrorType = fallbackType
	}
	return &StatusError{ErrorType: doc.ErrorType, ErrorMessage: truncate(doc.ErrorMessage, maxErrorMessageLen)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
