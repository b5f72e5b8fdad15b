// Package records keeps one record per invocation — when it started, how
// long it ran and was billed, the memory it used, whether it was a cold
// start and, if so, where the cold start's time went step by step, and the
// host it ran on — in the log store beside the function's logs (same
// retention), and serves them at
//
//	GET /flint/v1/functions/{name}/invocations[?since=T][&limit=N]
//
// as {"invocations":[Record, ...]}, oldest first. T is RFC 3339 or Unix
// milliseconds (default: one hour ago); N caps the answer to the newest N
// records (default 1000, at most 10000). The web console draws its plots
// from it.
package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/logstore"
)

// Record is one invocation, as stored and served.
type Record struct {
	RequestID string `json:"requestId"`
	Version   string `json:"version"`
	// Start is when the platform took the invocation.
	Start            time.Time `json:"start"`
	DurationMs       float64   `json:"durationMs"`
	BilledDurationMs int64     `json:"billedDurationMs"`
	MemorySizeMB     int       `json:"memorySizeMB"`
	MemoryUsedMB     int       `json:"memoryUsedMB"`
	ColdStart        bool      `json:"coldStart"`
	InitDurationMs   float64   `json:"initDurationMs,omitempty"`
	// Steps break a cold start down (absent for warm invocations).
	Steps *Steps `json:"steps,omitempty"`
	Host  string `json:"host,omitempty"`
	// Sandbox is the sandbox that ran it.
	Sandbox string `json:"sandbox,omitempty"`
	// Outcome is success, function_error or timeout; ErrorType the
	// function's (or the platform's) errorType when not success.
	Outcome   string `json:"outcome"`
	ErrorType string `json:"errorType,omitempty"`
}

// Steps are the steps of a cold start, in milliseconds.
type Steps struct {
	Placement     float64 `json:"placement"`
	CodeFetch     float64 `json:"codeFetch"`
	SandboxCreate float64 `json:"sandboxCreate"`
	RuntimeInit   float64 `json:"runtimeInit"`
}

// Sink stores records; *logstore.Store implements it.
type Sink interface {
	AppendRecord(ctx context.Context, account, function, requestID string, data []byte) error
}

// Source reads records back; *logstore.Store implements it.
type Source interface {
	ReadRecords(ctx context.Context, account, function string, opts logstore.ReadOptions, fn func(logstore.Entry) error) error
}

// New builds the record of an invocation that ran. start is when the
// platform took it; memoryMB is the function's memory size; outcome is
// its classification (metrics.Outcome).
func New(res *invocation.Result, start time.Time, memoryMB int, outcome string) Record {
	r := Record{
		RequestID:        res.RequestID,
		Version:          res.ExecutedVersion,
		Start:            start.UTC(),
		DurationMs:       ms(res.Duration),
		BilledDurationMs: billedMs(res.Duration),
		MemorySizeMB:     memoryMB,
		MemoryUsedMB:     int((res.MemoryUsedBytes + (1 << 20) - 1) >> 20),
		ColdStart:        res.ColdStart,
		Host:             res.Host,
		Sandbox:          res.SandboxID,
		Outcome:          outcome,
	}
	if outcome != "success" {
		r.ErrorType = res.ErrorType
	}
	if res.ColdStart {
		r.InitDurationMs = ms(res.InitDuration)
		if c := res.Cold; c != nil {
			r.Steps = &Steps{Placement: ms(c.Placement), CodeFetch: ms(c.CodeFetch),
				SandboxCreate: ms(c.SandboxCreate), RuntimeInit: ms(c.RuntimeInit)}
		}
	}
	return r
}

// ms is d in milliseconds, rounded to microseconds.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// billedMs rounds up to the next millisecond (at least 1), as the REPORT
// line's Billed Duration.
func billedMs(d time.Duration) int64 {
	b := int64((d + time.Millisecond - 1) / time.Millisecond)
	return max(b, 1)
}

// Writer appends records to a Sink without holding up the invocation: the
// Sink queues them (the log store group-commits them).
type Writer struct {
	sink Sink
	log  *slog.Logger

	lost     atomic.Int64 // records not stored
	lastWarn atomic.Int64 // unix nanos of the last warning
}

// warnEvery bounds the warnings about lost records (a full disk would
// otherwise log one per invocation).
const warnEvery = 10 * time.Second

// Lost is the number of records that could not be stored.
func (w *Writer) Lost() int64 { return w.lost.Load() }

// NewWriter returns a Writer; log (nil: discard) reports lost records.
func NewWriter(sink Sink, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{sink: sink, log: log}
}

// Write stores r for the account's function. A failure is logged: a lost
// record never fails the invocation.
func (w *Writer) Write(account, function string, r *Record) {
	var data []byte
	var err error
	if r.encodable() {
		data = r.appendJSON(make([]byte, 0, 320))
	} else {
		data, err = json.Marshal(r)
	}
	if err == nil {
		// The log store queues the record; it blocks only when its queue
		// is full, and then for a bounded time (logstore.Config.StallWait).
		err = w.sink.AppendRecord(context.Background(), account, function, r.RequestID, data)
	}
	if err != nil {
		n := w.lost.Add(1)
		now := time.Now().UnixNano()
		if last := w.lastWarn.Load(); now-last >= int64(warnEvery) && w.lastWarn.CompareAndSwap(last, now) {
			w.log.Warn("invocation record not stored", "function", function, "requestId", r.RequestID, "lost", n, "err", err)
		}
	}
}

// Limits of one answer.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
	DefaultSince = time.Hour
)

var fnNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Handler serves GET /flint/v1/functions/{name}/invocations (mount it on
// that pattern: it reads the path value "name"); accountOf names the
// caller's account, whose function it is.
func Handler(src Source, accountOf func(*http.Request) string, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !fnNameRE.MatchString(name) {
			lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid function name %q", name))
			return
		}
		q := r.URL.Query()
		since := now().Add(-DefaultSince)
		if v := q.Get("since"); v != "" {
			t, err := ParseSince(v)
			if err != nil {
				lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "%s", err.Error()))
				return
			}
			since = t
		}
		limit := DefaultLimit
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLimit {
				lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue,
					"limit must be an integer from 1 to %d", MaxLimit))
				return
			}
			limit = n
		}
		out, err := Read(r.Context(), src, accountOf(r), name, since, limit)
		if err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Invocations []Record `json:"invocations"`
		}{out})
	})
}

// Read returns the newest limit records of function stored at or after
// since, oldest first (never nil).
func Read(ctx context.Context, src Source, account, function string, since time.Time, limit int) ([]Record, error) {
	out := []Record{}
	err := src.ReadRecords(ctx, account, function, logstore.ReadOptions{Since: since}, func(e logstore.Entry) error {
		var rec Record
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			return nil // not a record: skipped
		}
		if rec.Start.Before(since) {
			return nil
		}
		out = append(out, rec)
		if len(out) > 2*limit { // keep memory bounded: drop the oldest
			out = append(out[:0], out[len(out)-limit:]...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read invocation records of %s: %w", function, err)
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// ParseSince reads an RFC 3339 time or Unix milliseconds.
func ParseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.UnixMilli(n), nil
	}
	return time.Time{}, errors.New("since must be an RFC 3339 time (2006-01-02T15:04:05Z) or Unix milliseconds")
}
