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
// runs one event at a time — unless Config.MaxConcurrency is above 1 (Lambda
// Managed Instances): then up to that many are, each answered on its own
// request-id route, and an invocation abandoned after delivery (timed out)
// leaves the others running.
package runtimeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	ErrBusy   = errors.New("runtimeapi: every invocation slot is in use")
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
	// MaxConcurrency is how many invocations may be in the Server at once
	// (0: 1, Lambda's default). Above 1 (Lambda Managed Instances'
	// PerExecutionEnvironmentMaxConcurrency) the runtime runs several
	// /next pollers and takes up to that many events at once.
	MaxConcurrency int
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.MaxConcurrency < 0 {
		return fmt.Errorf("runtimeapi: MaxConcurrency %d < 0", c.MaxConcurrency)
	}
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
	kick   chan struct{} // capacity 1: wakes a /next waiter when queue is not empty
	ready  chan struct{} // closed at the first /next
	initF  chan struct{} // closed when /init/error was posted
	closed chan struct{} // closed by Close

	readyOnce, initOnce, closeOnce sync.Once

	mu sync.Mutex
	// guarded by mu:
	inflight int                 // Dispatches in progress, at most cfg.MaxConcurrency
	queue    []*pending          // dispatched, not yet taken by a /next
	current  map[string]*pending // delivered to the runtime, awaiting its answer
	// late holds the ids of invocations abandoned after delivery (timed
	// out) when MaxConcurrency > 1: the runtime goes on running them, and
	// its late answer is accepted (202) and dropped, since aws-lambda-go
	// exits on any other status and would take the sandbox's other
	// invocations with it. At most maxLate ids are kept.
	late     map[string]struct{}
	initErr  *ErrorDoc
	readyAt  time.Time
	initBody []byte
}

// maxLate bounds Server.late.
const maxLate = 4096

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
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 1
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		kick:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		initF:   make(chan struct{}),
		closed:  make(chan struct{}),
		current: make(map[string]*pending, cfg.MaxConcurrency),
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
	p := &pending{req: req, deadline: deadline, done: make(chan Outcome, 1), stream: stream}
	s.mu.Lock()
	if s.inflight >= s.cfg.MaxConcurrency {
		s.mu.Unlock()
		return Outcome{}, fmt.Errorf("dispatch %s: %w", req.RequestID, ErrBusy)
	}
	select {
	case <-s.closed:
		s.mu.Unlock()
		return Outcome{}, fmt.Errorf("dispatch %s: %w (%w)", req.RequestID, ErrClosed, ErrUndelivered)
	default:
	}
	s.inflight++
	s.queue = append(s.queue, p)
	s.mu.Unlock()
	signal(s.kick)

	var err error
	select {
	case out := <-p.done:
		s.finish(p, false)
		return out, nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-s.closed:
		err = ErrClosed
	}
	queued := s.finish(p, true)
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

// signal wakes the receiver of a cap-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// finish takes p out of the Server (abandoned: it may still be queued or
// delivered) and frees its slot. It reports whether p was still queued
// (never delivered).
func (s *Server) finish(p *pending, abandoned bool) (queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if !abandoned {
		return false
	}
	if i := slices.Index(s.queue, p); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
		return true
	}
	id := p.req.RequestID
	if s.current[id] == p {
		delete(s.current, id)
		if s.cfg.MaxConcurrency > 1 && len(s.late) < maxLate {
			if s.late == nil {
				s.late = make(map[string]struct{})
			}
			s.late[id] = struct{}{}
		}
	}
	return false
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
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			p := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.current[p.req.RequestID] = p
			more := len(s.queue) > 0
			s.mu.Unlock()
			if more { // pass the wake-up on to another poller
				signal(s.kick)
			}
			return p
		}
		s.mu.Unlock()
		select {
		case <-s.kick:
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return nil
		}
	}
}

// complete delivers out for the invocation id. It reports false when id is
// not an invocation the runtime currently holds.
func (s *Server) complete(id string, out Outcome) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.current[id]
	if p == nil {
		return false
	}
	delete(s.current, id)
	p.done <- out
	return true
}

// currentPending returns the invocation id if the runtime holds it.
func (s *Server) currentPending(id string) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current[id]
}

// isCurrent reports whether the runtime holds the invocation id.
func (s *Server) isCurrent(id string) bool {
	return s.currentPending(id) != nil
}

// lateAnswer reports (once) whether id is an invocation abandoned after
// delivery whose late answer is to be accepted and dropped.
func (s *Server) lateAnswer(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.late[id]; ok {
		delete(s.late, id)
		return true
	}
	return false
}

func (s *Server) setInitError(doc *ErrorDoc, body []byte) {
	s.initOnce.Do(func() {
		s.mu.Lock()
		s.initErr, s.initBody = doc, body
		s.mu.Unlock()
		close(s.initF)
	})
}
