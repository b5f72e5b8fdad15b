// Package runtimeapi serves AWS Lambda's Runtime API (version 2018-06-01)
// for one sandbox. The worker creates one Server per sandbox and hands it to
// the sandbox driver, which makes it reachable from inside the sandbox only;
// the runtime (aws-lambda-go, Flint's Python and Node clients, any custom
// runtime) long-polls /next for events and posts responses and errors back.
//
// State of one invocation, as the Server sees it:
//
//	Dispatch ──► queued ──(runtime GET /next)──► delivered ──(POST /response|/error)──► done
//	               │                                  │
//	               └──── ctx done / Close ────────────┴──► abandoned (late posts get 400)
//
// Only one invocation is in the Server at a time, as in Lambda: a sandbox
// runs one event at a time.
package runtimeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

// DefaultMaxResponseBytes is Lambda's limit on a synchronous response
// (6 MB as Lambda counts it).
const DefaultMaxResponseBytes = 6291556

// DefaultMaxStreamBytes is Lambda's soft limit on a streamed response
// (20 MiB).
const DefaultMaxStreamBytes = 20 << 20

// HeaderResponseMode is the header a runtime sets to "streaming" on a
// response it streams (chunked, errors in trailers).
const HeaderResponseMode = "Lambda-Runtime-Function-Response-Mode"

// Error types the Server itself produces.
const (
	ErrorTypeResponseSizeTooLarge = "Function.ResponseSizeTooLarge"
	ErrorTypeUnknown              = "Runtime.Unknown"
)

// Errors returned by Dispatch.
var (
	ErrBusy   = errors.New("runtimeapi: an invocation is already in progress")
	ErrClosed = errors.New("runtimeapi: server closed")
	// ErrUndelivered is wrapped (besides the cause) when Dispatch gave up
	// before the runtime took the event: the function never saw it, so it
	// is safe to run it elsewhere.
	ErrUndelivered = errors.New("runtimeapi: event was not delivered to the runtime")
)

// Config configures a Server.
type Config struct {
	// FunctionARN is sent as Lambda-Runtime-Invoked-Function-Arn when the
	// invocation does not name the ARN it was invoked by
	// (invocation.Request.InvokedFunctionARN).
	FunctionARN string
	// Logger receives protocol problems (nil: discard).
	Logger *slog.Logger
	// Clock stamps ReadyAt (nil: time.Now).
	Clock func() time.Time
	// MaxResponseBytes limits a response body (0: DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// MaxStreamBytes limits a response streamed to a DispatchStream
	// caller (0: DefaultMaxStreamBytes).
	MaxStreamBytes int64
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.MaxResponseBytes < 0 || c.MaxStreamBytes < 0 {
		return fmt.Errorf("runtimeapi: MaxResponseBytes %d or MaxStreamBytes %d < 0", c.MaxResponseBytes, c.MaxStreamBytes)
	}
	return nil
}

// ErrorDoc is an error document as runtimes post it to /error and
// /init/error (Node's runtime sends "trace" instead of "stackTrace"; the raw
// document is kept in Outcome.Payload).
type ErrorDoc struct {
	ErrorMessage string          `json:"errorMessage"`
	ErrorType    string          `json:"errorType"`
	StackTrace   json.RawMessage `json:"stackTrace,omitempty"`
}

// Outcome is how an invocation ended at the Runtime API.
type Outcome struct {
	// Payload is the response body, or when Err is set the error document
	// as the caller should receive it (JSON). A response streamed to a
	// DispatchStream caller is not in it.
	Payload []byte
	// Err is set when the runtime reported an error (or the response was
	// too large).
	Err *ErrorDoc
}

// pending is one dispatched invocation.
type pending struct {
	req      invocation.Request
	deadline time.Time
	done     chan Outcome   // buffered 1; receives exactly one Outcome
	stream   *guardedStream // nil for a buffered Dispatch
}

// guardedStream passes a streamed response on to a DispatchStream caller's
// Stream until close: close waits for a Write in progress, and later calls
// fail, so the Stream is never used after DispatchStream returned.
type guardedStream struct {
	mu     sync.Mutex
	s      invocation.Stream // guarded by mu
	closed bool              // guarded by mu
}

var errStreamClosed = errors.New("runtimeapi: the invocation's stream is closed")

func (g *guardedStream) Start(contentType string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errStreamClosed
	}
	return g.s.Start(contentType)
}

func (g *guardedStream) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errStreamClosed
	}
	return g.s.Write(p)
}

func (g *guardedStream) close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Server is the Runtime API of one sandbox. All methods are safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	queue  chan *pending // capacity 1: the invocation waiting for /next
	ready  chan struct{} // closed at the first /next
	initF  chan struct{} // closed when /init/error was posted
	closed chan struct{} // closed by Close

	readyOnce, initOnce, closeOnce sync.Once

	mu sync.Mutex
	// guarded by mu:
	busy     bool     // a Dispatch is in progress
	current  *pending // delivered to the runtime, awaiting its answer
	initErr  *ErrorDoc
	readyAt  time.Time
	initBody []byte
}

// New returns a Server, applying defaults to the zero fields of cfg
// (Validate reports what defaults cannot fix).
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxStreamBytes <= 0 {
		cfg.MaxStreamBytes = DefaultMaxStreamBytes
	}
	return &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		queue:  make(chan *pending, 1),
		ready:  make(chan struct{}),
		initF:  make(chan struct{}),
		closed: make(chan struct{}),
	}
}

// Ready is closed when the runtime first asks for an event, i.e. when its
// initialisation has finished.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// ReadyAt is when Ready was closed (zero before).
func (s *Server) ReadyAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyAt
}

// InitFailed is closed when the runtime posted /init/error.
func (s *Server) InitFailed() <-chan struct{} { return s.initF }

// InitError returns the document posted to /init/error and the raw body,
// or nil before InitFailed is closed.
func (s *Server) InitError() (*ErrorDoc, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initErr, s.initBody
}

// Close unblocks every pending /next and Dispatch. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// Dispatch hands req to the runtime (through its pending or next GET /next)
// and waits for its /response or /error. deadline is sent as
// Lambda-Runtime-Deadline-Ms; Dispatch does not enforce it: ctx does. It
// returns ErrBusy when another Dispatch is in progress, ErrClosed after
// Close, and ctx.Err() (or its cause) when ctx ends first; in those cases
// the invocation is abandoned and a late answer from the runtime gets 400,
// and the error also wraps ErrUndelivered if the runtime never took the
// event.
func (s *Server) Dispatch(ctx context.Context, req invocation.Request, deadline time.Time) (Outcome, error) {
	return s.dispatch(ctx, req, deadline, nil)
}

// DispatchStream is Dispatch for a caller that takes the response as a
// stream: the body of a successful response goes to stream as the runtime
// sends it (a runtime answering in streaming mode, chunk by chunk, up to
// MaxStreamBytes; any other answer at once) and Outcome.Payload stays
// empty; an error answer comes back in the Outcome as for Dispatch. stream
// is not used after DispatchStream returns.
func (s *Server) DispatchStream(ctx context.Context, req invocation.Request, deadline time.Time, stream invocation.Stream) (Outcome, error) {
	return s.dispatch(ctx, req, deadline, &guardedStream{s: stream})
}

func (s *Server) dispatch(ctx context.Context, req invocation.Request, deadline time.Time, stream *guardedStream) (Outcome, error) {
	defer stream.close()
	s.mu.Lock()
	if s.busy {
		s.mu.Unlock()
		return Outcome{}, fmt.Errorf("dispatch %s: %w", req.RequestID, ErrBusy)
	}
	select {
	case <-s.closed:
		s.mu.Unlock()
		return Outcome{}, fmt.Errorf("dispatch %s: %w (%w)", req.RequestID, ErrClosed, ErrUndelivered)
	default:
	}
	s.busy = true
	s.mu.Unlock()

	p := &pending{req: req, deadline: deadline, done: make(chan Outcome, 1), stream: stream}
	s.queue <- p // never blocks: busy guarantees the queue is empty

	var err error
	select {
	case out := <-p.done:
		s.finish(p)
		return out, nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-s.closed:
		err = ErrClosed
	}
	queued := s.finish(p)
	// The runtime may have answered at the same moment.
	select {
	case out := <-p.done:
		return out, nil
	default:
	}
	if queued {
		return Outcome{}, fmt.Errorf("dispatch %s: %w (%w)", req.RequestID, err, ErrUndelivered)
	}
	return Outcome{}, fmt.Errorf("dispatch %s: %w", req.RequestID, err)
}

// finish abandons p if it is still queued or delivered and frees the
// Server for the next Dispatch. It reports whether p was still queued
// (never delivered).
func (s *Server) finish(p *pending) (queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case q := <-s.queue:
		if q != p { // cannot happen: only one Dispatch at a time
			s.queue <- q
		} else {
			queued = true
		}
	default:
	}
	if s.current == p {
		s.current = nil
	}
	s.busy = false
	return queued
}

// next waits for an invocation for the runtime. It returns nil when ctx
// ends or the Server is closed.
func (s *Server) next(ctx context.Context) *pending {
	s.readyOnce.Do(func() {
		s.mu.Lock()
		s.readyAt = s.cfg.Clock()
		s.mu.Unlock()
		close(s.ready)
	})
	select {
	case p := <-s.queue:
		s.mu.Lock()
		s.current = p
		s.mu.Unlock()
		return p
	case <-ctx.Done():
		return nil
	case <-s.closed:
		return nil
	}
}

// complete delivers out for the invocation id. It reports false when id is
// not the invocation the runtime currently holds.
func (s *Server) complete(id string, out Outcome) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.current
	if p == nil || p.req.RequestID != id {
		return false
	}
	s.current = nil
	p.done <- out
	return true
}

// currentPending returns the invocation the runtime holds if its id is id.
func (s *Server) currentPending(id string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil && s.current.req.RequestID == id {
		return s.current
	}
	return nil
}

// isCurrent reports whether id is the invocation the runtime holds.
func (s *Server) isCurrent(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current != nil && s.current.req.RequestID == id
}

func (s *Server) setInitError(doc *ErrorDoc, body []byte) {
	s.initOnce.Do(func() {
		s.mu.Lock()
		s.initErr, s.initBody = doc, body
		s.mu.Unlock()
		close(s.initF)
	})
}
