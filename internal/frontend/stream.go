package frontend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// InvokeWithResponseStream: POST
// /2021-11-15/functions/{name}/response-streaming-invocations answers 200
// with an application/vnd.amazon.eventstream body: one PayloadChunk event
// per chunk the function streams, as it streams it, then one InvokeComplete
// event ({ErrorCode, ErrorDetails, LogResult}). Errors found before the
// function answers (not found, throttled, bad input) are ordinary Lambda
// errors; a function error after the stream began is reported in
// InvokeComplete.

// StreamPrefix is the API date of InvokeWithResponseStream.
const StreamPrefix = "/2021-11-15/"

// StreamInvoker is an optional ability of an Invoker (checked at run time):
// running an invocation whose response goes to a stream as the function
// produces it. *workermanager.Manager implements it. An Invoker without it
// answers InvokeWithResponseStream with the whole response in one chunk.
type StreamInvoker interface {
	// InvokeStream is Invoke with a successful response's body written to
	// stream (Result.Payload then stays empty); stream is not used after
	// it returns.
	InvokeStream(ctx context.Context, fn *metadata.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error)
}

// eventStream writes InvokeWithResponseStream's response: the HTTP header
// at the first event, then each event flushed. Its methods are safe for
// concurrent use; after finish, writes fail.
type eventStream struct {
	mu       sync.Mutex
	w        http.ResponseWriter // guarded by mu
	rc       *http.ResponseController
	enc      *eventstream.Encoder
	version  string
	started  bool // guarded by mu: the 200 and its headers are sent
	finished bool // guarded by mu
}

var errStreamFinished = errors.New("frontend: response stream finished")

func (s *eventStream) begin() {
	if s.started {
		return
	}
	s.started = true
	hdr := s.w.Header()
	hdr.Set("Content-Type", "application/vnd.amazon.eventstream")
	hdr.Set("X-Amz-Executed-Version", s.version)
	s.w.WriteHeader(http.StatusOK)
}

// Start sends the response's header; the function's content type is not
// Lambda's to report here (the body is the event stream).
func (s *eventStream) Start(string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return errStreamFinished
	}
	s.begin()
	return s.rc.Flush()
}

func (s *eventStream) event(typ, contentType string, payload []byte) error {
	var msg eventstream.Message
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Headers.Set(":event-type", eventstream.StringValue(typ))
	msg.Headers.Set(":content-type", eventstream.StringValue(contentType))
	msg.Payload = payload
	if err := s.enc.Encode(s.w, msg); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Write sends one PayloadChunk event.
func (s *eventStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return 0, errStreamFinished
	}
	s.begin()
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.event("PayloadChunk", "application/octet-stream", p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// invokeComplete is the InvokeComplete event's body.
type invokeComplete struct {
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorDetails string `json:"ErrorDetails,omitempty"`
	LogResult    string `json:"LogResult,omitempty"`
}

// finish sends InvokeComplete and ends the stream.
func (s *eventStream) finish(c invokeComplete) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	s.begin()
	body, _ := json.Marshal(c)
	_ = s.event("InvokeComplete", "application/json", body)
	s.finished = true
}

// hasStarted reports whether the 200 went out (errors must then travel
// in InvokeComplete).
func (s *eventStream) hasStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (h *Handler) invokeWithResponseStream(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	invType := r.Header.Get("X-Amz-Invocation-Type")
	switch invType {
	case "", "RequestResponse", "DryRun":
	default:
		return validation("invocationType", invType, false, "Member must satisfy enum value set: [RequestResponse, DryRun]")
	}
	logType := r.Header.Get("X-Amz-Log-Type")
	switch logType {
	case "", "None", "Tail":
	default:
		return validation("logType", logType, false, "Member must satisfy enum value set: [None, Tail]")
	}
	payload, err := readBody(r, maxSyncPayload, "InvokeWithResponseStream")
	if err != nil {
		return err
	}
	if len(payload) > 0 && !json.Valid(payload) {
		var v any
		perr := json.Unmarshal(payload, &v)
		return lambdaerr.New(lambdaerr.InvalidRequestContent,
			"Could not parse request body into json: Could not parse payload into json: %s", jsonProblem(perr))
	}
	clientContext := r.Header.Get("X-Amz-Client-Context")
	if clientContext != "" {
		raw, err := base64.StdEncoding.DecodeString(clientContext)
		if err != nil || !json.Valid(raw) || len(clientContext) > maxClientContext {
			return lambdaerr.New(lambdaerr.InvalidRequestContent, "Client context must be a valid Base64-encoded JSON object.")
		}
	}
	fn, alias, err := h.invokeTarget(r, rt)
	if err != nil {
		return err
	}
	if alias != nil {
		if v := h.pickVersion(alias); v != fn.Version {
			if fn, err = h.cfg.Functions.Get(r.Context(), fn.Account, fn.Name, v); err != nil {
				return err
			}
		}
	}
	if fn, err = h.waitReady(r.Context(), fn); err != nil {
		return err
	}
	if err := checkActive(fn); err != nil {
		return err
	}
	if invType == "DryRun" {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	req := invocation.Request{RequestID: reqID, Payload: payload, ClientContext: clientContext, TraceID: r.Header.Get("X-Amzn-Trace-Id")}
	if req.TraceID == "" {
		req.TraceID = h.newTraceID()
	}
	es := &eventStream{w: w, rc: http.NewResponseController(w), enc: eventstream.NewEncoder(), version: fn.Version}
	// The invoker is done with es when it returns (StreamInvoker's
	// contract): an error before the first chunk is an ordinary error.
	res, err := h.invokeStream(r.Context(), fn, req, es)
	if err != nil && !es.hasStarted() {
		return err
	}
	var c invokeComplete
	switch {
	case err != nil:
		le := lambdaerr.As(err)
		c.ErrorCode, c.ErrorDetails = le.Type, le.Message
		h.log.Warn("streamed invocation failed", "requestId", reqID, "function", fn.Name, "err", err)
	case res.FunctionError != "":
		c.ErrorCode, c.ErrorDetails = res.ErrorType, string(res.Payload)
	}
	if logType == "Tail" {
		tail := res.Log
		if len(tail) > maxLogTail {
			tail = tail[len(tail)-maxLogTail:]
		}
		c.LogResult = base64.StdEncoding.EncodeToString(tail)
	}
	es.finish(c)
	h.log.Debug("streamed invocation done", "requestId", reqID, "function", fn.Name, "version", fn.Version, "functionError", res.FunctionError, "coldStart", res.ColdStart, "duration", res.Duration)
	return nil
}

// invokeStream runs req on fn with its response going to stream, through
// the Invoker's StreamInvoker when it has one, else buffered and written
// in one piece.
func (h *Handler) invokeStream(ctx context.Context, fn *metadata.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	if si, ok := h.cfg.Invoker.(StreamInvoker); ok {
		return si.InvokeStream(ctx, fn, req, stream)
	}
	res, err := h.cfg.Invoker.Invoke(ctx, fn, req)
	if err == nil && res.FunctionError == "" {
		if err := stream.Start("application/json"); err == nil {
			_, _ = stream.Write(res.Payload)
		}
		res.Payload = nil
	}
	return res, err
}

// InvokeURLStream is InvokeURL for a URL in RESPONSE_STREAM mode: the
// function's response goes to stream as it is produced.
func (h *Handler) InvokeURLStream(ctx context.Context, c *metadata.URLConfig, req invocation.Request, stream invocation.Stream) (*metadata.Function, invocation.Result, error) {
	fn, err := h.urlFunction(ctx, c)
	if err != nil {
		return nil, invocation.Result{}, err
	}
	res, err := h.invokeStream(ctx, fn, req, stream)
	return fn, res, err
}
