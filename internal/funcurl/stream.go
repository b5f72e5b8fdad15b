package funcurl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
)

// StreamInvoker is an optional ability of an Invoker (checked at run time):
// running a URL's invocation with the response streamed. A URL in
// RESPONSE_STREAM mode uses it; without it the URL answers buffered.
// *frontend.Handler implements it.
type StreamInvoker interface {
	// InvokeURLStream is InvokeURL with a successful response's body
	// written to stream as the function produces it.
	InvokeURLStream(ctx context.Context, c *metadata.URLConfig, req invocation.Request, stream invocation.Stream) (*metadata.Function, invocation.Result, error)
}

// maxPrelude bounds the HTTP prelude (JSON before the 8 NUL bytes).
const maxPrelude = 64 << 10

// preludeEnd separates an HTTP prelude from the body.
var preludeEnd = make([]byte, 8)

// urlStream writes a streamed function answer to a URL's client: plain
// (status 200, the runtime's content type) or, when the runtime marks its
// response as carrying an HTTP prelude, with the prelude's status, headers
// and cookies. Every chunk is flushed. Safe for concurrent use; after
// finish, calls fail.
type urlStream struct {
	mu       sync.Mutex
	w        http.ResponseWriter
	rc       *http.ResponseController
	r        *http.Request
	cors     *metadata.URLCors
	prelude  bool   // guarded by mu: waiting for the end of an HTTP prelude
	buf      []byte // guarded by mu: the prelude so far
	started  bool   // guarded by mu: the status line went out
	finished bool   // guarded by mu
}

var errURLStreamFinished = errors.New("funcurl: response finished")

func (s *urlStream) begin(status int) {
	s.started = true
	corsHeaders(s.w.Header(), s.r, s.cors)
	s.w.WriteHeader(status)
}

func (s *urlStream) Start(contentType string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return errURLStreamFinished
	}
	if contentType == invocation.ContentTypeHTTPPrelude {
		s.prelude = true
		return nil
	}
	s.w.Header().Set("Content-Type", contentType)
	s.begin(http.StatusOK)
	return s.rc.Flush()
}

func (s *urlStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return 0, errURLStreamFinished
	}
	n := len(p)
	if s.prelude {
		s.buf = append(s.buf, p...)
		i := bytes.Index(s.buf, preludeEnd)
		if i < 0 {
			if len(s.buf) > maxPrelude {
				return 0, errBadResponse{"the HTTP prelude is longer than 64 KiB or lacks its 8 NUL bytes"}
			}
			return n, nil
		}
		if err := s.applyPrelude(s.buf[:i]); err != nil {
			return 0, err
		}
		p = s.buf[i+len(preludeEnd):]
		s.prelude, s.buf = false, nil
	}
	if !s.started {
		s.begin(http.StatusOK)
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, s.rc.Flush()
}

// applyPrelude sends the status and headers an HTTP prelude gives.
func (s *urlStream) applyPrelude(raw []byte) error {
	var pre struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Cookies    []string          `json:"cookies"`
	}
	if err := json.Unmarshal(raw, &pre); err != nil {
		return errBadResponse{"the HTTP prelude is not a JSON object: " + err.Error()}
	}
	if pre.StatusCode == 0 {
		pre.StatusCode = http.StatusOK
	}
	if pre.StatusCode < 100 || pre.StatusCode > 599 {
		return errBadResponse{"statusCode must be 100-599"}
	}
	hdr := s.w.Header()
	for k, v := range pre.Headers {
		if !validHeader(k, v) {
			return errBadResponse{"invalid header in the HTTP prelude"}
		}
		if !corsOwned(k, s.cors) {
			hdr.Set(k, v)
		}
	}
	for _, c := range pre.Cookies {
		if validHeader("Set-Cookie", c) {
			hdr.Add("Set-Cookie", c)
		}
	}
	if hdr.Get("Content-Type") == "" {
		hdr.Set("Content-Type", "application/octet-stream")
	}
	s.begin(pre.StatusCode)
	return nil
}

// finish ends the stream and reports whether the client already has a
// status line (else the caller answers).
func (s *urlStream) finish() (started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	if !s.started && s.prelude && len(s.buf) > 0 {
		// A prelude that never ended: what came is the body.
		s.w.Header().Set("Content-Type", "application/octet-stream")
		s.begin(http.StatusOK)
		_, _ = s.w.Write(s.buf)
	}
	return s.started
}

// serveStream answers a RESPONSE_STREAM URL's request through si.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, si StreamInvoker, c *metadata.URLConfig, req invocation.Request) {
	s := &urlStream{w: w, rc: http.NewResponseController(w), r: r, cors: c.Cors}
	fn, res, err := si.InvokeURLStream(r.Context(), c, req, s)
	if s.finish() {
		if err != nil || res.FunctionError != "" {
			h.log.Info("function url: streamed response ended by an error", "requestId", req.RequestID, "function", c.FunctionName,
				"errorType", res.ErrorType, "err", err)
		}
		return
	}
	if err != nil {
		h.invokeError(w, c, req.RequestID, err)
		return
	}
	corsHeaders(w.Header(), r, c.Cors)
	if res.FunctionError != "" {
		h.log.Debug("function url: function error", "requestId", req.RequestID, "function", fn.Name, "errorType", res.ErrorType)
		message(w, http.StatusBadGateway, "", "Internal Server Error")
		return
	}
	// The function streamed nothing at all.
	w.WriteHeader(http.StatusOK)
}
