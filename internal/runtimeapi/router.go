package runtimeapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Paths and headers of the Runtime API.
const (
	pathPrefix = "/2018-06-01/runtime/"

	HeaderRequestID       = "Lambda-Runtime-Aws-Request-Id"
	HeaderDeadlineMs      = "Lambda-Runtime-Deadline-Ms"
	HeaderFunctionARN     = "Lambda-Runtime-Invoked-Function-Arn"
	HeaderTraceID         = "Lambda-Runtime-Trace-Id"
	HeaderClientContext   = "Lambda-Runtime-Client-Context"
	HeaderCognitoIdentity = "Lambda-Runtime-Cognito-Identity"
	HeaderErrorType       = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody      = "Lambda-Runtime-Function-Error-Body"
)

// ServeHTTP routes one Runtime API call. Unknown paths get 404, a wrong
// method 405, answers for an invocation the runtime does not hold 400.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, pathPrefix)
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "unknown path "+strconv.Quote(r.URL.Path))
		return
	}
	// rest is "invocation/next", "invocation/{id}/response|error" or
	// "init/error"; cut without allocating (two requests per invocation).
	first, tail, _ := strings.Cut(rest, "/")
	id, last, three := strings.Cut(tail, "/")
	if !three {
		id, last = "", tail
	}
	switch {
	case first == "invocation" && !three && last == "next":
		if !allow(w, r, http.MethodGet) {
			return
		}
		s.serveNext(w, r)
	case first == "invocation" && three && id != "" && last == "response":
		if !allow(w, r, http.MethodPost) {
			return
		}
		s.serveResponse(w, r, id)
	case first == "invocation" && three && id != "" && last == "error":
		if !allow(w, r, http.MethodPost) {
			return
		}
		s.serveError(w, r, id)
	case first == "init" && !three && last == "error":
		if !allow(w, r, http.MethodPost) {
			return
		}
		s.serveInitError(w, r)
	default:
		writeError(w, http.StatusNotFound, "NotFound", "unknown path "+strconv.Quote(r.URL.Path))
	}
}

func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" not allowed")
	return false
}

func (s *Server) serveNext(w http.ResponseWriter, r *http.Request) {
	p := s.next(r.Context())
	if p == nil {
		// Closed or the runtime hung up: Lambda answers 500 ("runtime
		// should exit promptly") when the environment is going away.
		writeError(w, http.StatusInternalServerError, "Runtime.Shutdown", "sandbox is shutting down")
		return
	}
	arn := p.req.InvokedFunctionARN
	if arn == "" {
		arn = s.cfg.FunctionARN
	}
	// The header values share one allocation; the keys are canonical
	// already (no Set, which canonicalises), and Date is left out (a
	// runtime has no use for it). Two of these responses per invocation.
	v := [...]string{p.req.RequestID, strconv.FormatInt(p.deadline.UnixMilli(), 10), arn, p.req.TraceID, p.req.ClientContext,
		strconv.Itoa(len(p.req.Payload))}
	h := w.Header()
	h["Content-Type"] = contentJSON
	h["Date"] = nil
	h[HeaderRequestID] = v[0:1:1]
	h[HeaderDeadlineMs] = v[1:2:2]
	h[HeaderFunctionARN] = v[2:3:3]
	h[HeaderTraceID] = v[3:4:4]
	if p.req.ClientContext != "" {
		h[HeaderClientContext] = v[4:5:5]
	}
	h["Content-Length"] = v[5:6:6] // a large event is not chunked
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(p.req.Payload); err != nil {
		s.log.Warn("runtime api: write event", "request_id", p.req.RequestID, "err", err)
	}
}

func (s *Server) serveResponse(w http.ResponseWriter, r *http.Request, id string) {
	p := s.currentPending(id)
	if p == nil {
		s.rejectAnswer(w, r, id)
		return
	}
	if p.stream != nil {
		s.streamResponse(w, r, p)
		return
	}
	max := s.cfg.MaxResponseBytes
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		s.log.Warn("runtime api: read response", "request_id", id, "err", err)
		writeError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	if int64(len(body)) > max {
		doc := &ErrorDoc{
			ErrorType:    ErrorTypeResponseSizeTooLarge,
			ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", max),
		}
		s.complete(id, Outcome{Payload: mustJSON(doc), Err: doc})
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", max))
		return
	}
	// aws-lambda-go reports an error while streaming the body in trailers.
	if typ := r.Trailer.Get(HeaderErrorType); typ != "" {
		raw, _ := base64.StdEncoding.DecodeString(r.Trailer.Get(trailerErrorBody))
		doc, payload := parseErrorDoc(raw, typ)
		s.complete(id, Outcome{Payload: payload, Err: doc})
		writeAccepted(w)
		return
	}
	if !s.complete(id, Outcome{Payload: body}) {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	writeAccepted(w)
}

// streamResponse passes a response on to a DispatchStream caller as it
// arrives. A runtime in streaming mode sends it chunked and reports an
// error that happens mid-stream in the Lambda-Runtime-Function-Error-Type
// and -Body (base64) trailers; the chunks already passed on stay with the
// client.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, p *pending) {
	id := p.req.RequestID
	max := s.cfg.MaxStreamBytes
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	sinkErr := p.stream.Start(ct)
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			if total > max {
				doc := &ErrorDoc{
					ErrorType:    ErrorTypeResponseSizeTooLarge,
					ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", max),
				}
				s.complete(id, Outcome{Payload: mustJSON(doc), Err: doc})
				writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
					fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", max))
				return
			}
			if sinkErr == nil {
				// A client that went away stops the stream, not the
				// function: the rest is read and discarded.
				_, sinkErr = p.stream.Write(buf[:n])
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.log.Warn("runtime api: read streamed response", "request_id", id, "err", err)
			doc := &ErrorDoc{ErrorType: ErrorTypeUnknown, ErrorMessage: "The response stream was cut off: " + err.Error()}
			s.complete(id, Outcome{Payload: mustJSON(doc), Err: doc})
			writeError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
			return
		}
	}
	if typ := r.Trailer.Get(HeaderErrorType); typ != "" {
		raw, _ := base64.StdEncoding.DecodeString(r.Trailer.Get(trailerErrorBody))
		doc, payload := parseErrorDoc(raw, typ)
		s.complete(id, Outcome{Payload: payload, Err: doc})
		writeAccepted(w)
		return
	}
	if !s.complete(id, Outcome{}) {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	writeAccepted(w)
}

func (s *Server) serveError(w http.ResponseWriter, r *http.Request, id string) {
	if !s.isCurrent(id) {
		s.rejectAnswer(w, r, id)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxResponseBytes))
	doc, payload := parseErrorDoc(body, r.Header.Get(HeaderErrorType))
	if !s.complete(id, Outcome{Payload: payload, Err: doc}) {
		writeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	writeAccepted(w)
}

// rejectAnswer answers a /response or /error for an invocation the runtime
// does not hold: 400, unless it is the late answer of a timed-out
// invocation in a multi-concurrent sandbox (Server.late), accepted and
// dropped.
func (s *Server) rejectAnswer(w http.ResponseWriter, r *http.Request, id string) {
	if s.lateAnswer(id) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, s.cfg.MaxStreamBytes))
		writeAccepted(w)
		return
	}
	writeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
}

func (s *Server) serveInitError(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxResponseBytes))
	doc, payload := parseErrorDoc(body, r.Header.Get(HeaderErrorType))
	s.setInitError(doc, payload)
	writeAccepted(w)
}

// parseErrorDoc reads an error document. When body is a JSON object it is
// kept as the payload (runtimes add fields such as "trace" or
// "requestId"); otherwise a document is built. The errorType falls back to
// headerType, then to Runtime.Unknown.
func parseErrorDoc(body []byte, headerType string) (*ErrorDoc, []byte) {
	var doc ErrorDoc
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil && obj != nil {
		_ = json.Unmarshal(body, &doc) // best effort: fields may have odd types
		if doc.ErrorType == "" {
			doc.ErrorType = headerType
		}
		if doc.ErrorType == "" {
			doc.ErrorType = ErrorTypeUnknown
		}
		if _, ok := obj["errorType"]; !ok {
			obj["errorType"] = mustJSON(doc.ErrorType)
			return &doc, mustJSON(obj)
		}
		return &doc, body
	}
	doc.ErrorType = headerType
	if doc.ErrorType == "" {
		doc.ErrorType = ErrorTypeUnknown
	}
	doc.ErrorMessage = string(body)
	return &doc, mustJSON(&doc)
}

// contentJSON and acceptedLength are shared header values (never
// modified: Header.Set replaces a value, Add appends to a full slice).
var (
	contentJSON    = []string{"application/json"}
	acceptedLength = []string{strconv.Itoa(len(accepted))}
)

const accepted = `{"status":"OK"}`

func writeAccepted(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = contentJSON
	h["Content-Length"] = acceptedLength
	h["Date"] = nil
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, accepted)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(map[string]string{"errorType": typ, "errorMessage": msg}))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("runtimeapi: marshal %T: %v", v, err)) // only plain types are marshalled
	}
	return b
}
