package metrics

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"sync"
	"time"
)

// HTTP wraps the server's handler: every request is counted in
// flint_api_requests_total{operation,code} and timed in
// flint_api_request_duration_seconds{operation}. The operation is Lambda's
// operation name (Invoke, CreateFunction, ...) or a name for Flint's own
// endpoints (see Operation), so the label stays bounded whatever paths
// clients send.
func (m *Metrics) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := Operation(r.Method, r.URL.EscapedPath())
		rec := recorders.Get().(*statusRecorder)
		rec.ResponseWriter, rec.code = w, 0
		t0 := time.Now()
		defer func() {
			code := rec.code
			if code == 0 {
				code = http.StatusOK
			}
			c := m.apiChildren(op, code)
			c.latency.Observe(time.Since(t0).Seconds())
			c.requests.Inc()
			rec.ResponseWriter = nil
			recorders.Put(rec)
		}()
		next.ServeHTTP(rec, r)
	})
}

type apiKey struct {
	op   string
	code int
}

type apiChildren struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// apiChildren returns the label children of an operation and status
// code, resolved once.
func (m *Metrics) apiChildren(op string, code int) apiChildren {
	k := apiKey{op, code}
	m.mu.RLock()
	c, ok := m.api[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	c = apiChildren{m.apiRequests.WithLabelValues(op, strconv.Itoa(code)), m.apiLatency.WithLabelValues(op)}
	m.mu.Lock()
	m.api[k] = c
	m.mu.Unlock()
	return c
}

var recorders = sync.Pool{New: func() any { return new(statusRecorder) }}

// statusRecorder notes the status code; it passes Flush (log following)
// and Hijack through, and Unwrap for http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Operation names the API operation of a request from its method and
// escaped path: Lambda's operation names for Lambda's API, "flint:<what>"
// for Flint's own endpoints, and "other" for anything else. The result is
// one of a fixed set.
func Operation(method, path string) string {
	var buf [maxSegments]string
	seg, ok := split(path, buf[:0])
	switch {
	case !ok:
		return "other"
	case len(seg) == 0 || seg[0] == "":
		return "other"
	case seg[0] == "metrics" && len(seg) == 1:
		return "flint:Metrics"
	case seg[0] == "healthz" && len(seg) == 1:
		return "flint:Health"
	case seg[0] == "readyz" && len(seg) == 1:
		return "flint:Ready"
	case seg[0] == "console":
		return "flint:Console"
	case seg[0] == "flint" && len(seg) >= 3 && seg[1] == "v1":
		return flintOperation(method, seg[2:])
	case seg[0] == "2016-08-19" && len(seg) == 2 && seg[1] == "account-settings":
		return "GetAccountSettings"
	}
	if len(seg) < 2 || seg[1] != "functions" {
		return "other"
	}
	date, rest := seg[0], seg[2:]
	switch date {
	case "2015-03-31":
		return functionsOperation(method, rest)
	case "2017-10-31", "2019-09-30":
		if len(rest) == 2 && rest[1] == "concurrency" {
			return pick(method, "GetFunctionConcurrency", "", "PutFunctionConcurrency", "DeleteFunctionConcurrency")
		}
		if len(rest) == 2 && rest[1] == "provisioned-concurrency" {
			return pick(method, "GetProvisionedConcurrencyConfig", "", "PutProvisionedConcurrencyConfig", "DeleteProvisionedConcurrencyConfig")
		}
	case "2019-09-25":
		if len(rest) == 2 && rest[1] == "event-invoke-config" {
			return pick(method, "GetFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
				"PutFunctionEventInvokeConfig", "DeleteFunctionEventInvokeConfig")
		}
		if len(rest) == 3 && rest[1] == "event-invoke-config" && rest[2] == "list" {
			return pick(method, "ListFunctionEventInvokeConfigs", "", "", "")
		}
	}
	return "other"
}

func functionsOperation(method string, rest []string) string {
	switch {
	case len(rest) == 0:
		return pick(method, "ListFunctions", "CreateFunction", "", "")
	case len(rest) == 1:
		return pick(method, "GetFunction", "", "", "DeleteFunction")
	case len(rest) == 2:
		switch rest[1] {
		case "invocations":
			return pick(method, "", "Invoke", "", "")
		case "configuration":
			return pick(method, "GetFunctionConfiguration", "", "UpdateFunctionConfiguration", "")
		case "code":
			return pick(method, "", "", "UpdateFunctionCode", "")
		case "versions":
			return pick(method, "ListVersionsByFunction", "PublishVersion", "", "")
		case "aliases":
			return pick(method, "ListAliases", "CreateAlias", "", "")
		}
	case len(rest) == 3 && rest[1] == "aliases":
		return pick(method, "GetAlias", "", "UpdateAlias", "DeleteAlias")
	}
	return "other"
}

func flintOperation(method string, rest []string) string {
	switch {
	case len(rest) == 1 && rest[0] == "stats":
		return pick(method, "flint:Stats", "", "", "")
	case len(rest) == 1 && rest[0] == "cluster":
		return pick(method, "flint:Cluster", "", "", "")
	case rest[0] == "keys":
		return "flint:Keys"
	case rest[0] == "code":
		return pick(method, "flint:CodeDownload", "", "", "")
	case len(rest) == 2 && rest[0] == "invocations":
		return pick(method, "flint:InvocationStatus", "", "", "")
	case len(rest) == 3 && rest[0] == "functions" && rest[2] == "logs":
		return pick(method, "flint:Logs", "", "", "")
	case len(rest) == 3 && rest[0] == "functions" && rest[2] == "invocations":
		return pick(method, "flint:Invocations", "", "", "")
	case len(rest) >= 2 && rest[0] == "queues":
		if len(rest) == 2 {
			return pick(method, "", "", "", "flint:QueuePurge")
		}
		switch rest[2] {
		case "messages":
			return pick(method, "flint:QueuePeek", "", "", "flint:QueuePurge")
		case "receive":
			return pick(method, "", "flint:QueueReceive", "", "")
		case "redrive":
			return pick(method, "", "flint:QueueRedrive", "", "")
		}
	}
	return "other"
}

// pick returns the operation of method among GET, POST, PUT, DELETE, or
// "other" when the method has none.
func pick(method, get, post, put, del string) string {
	op := ""
	switch method {
	case http.MethodGet, http.MethodHead:
		op = get
	case http.MethodPost:
		op = post
	case http.MethodPut:
		op = put
	case http.MethodDelete:
		op = del
	}
	if op == "" {
		return "other"
	}
	return op
}

// maxSegments is the most path segments of any route.
const maxSegments = 6

// split cuts path into its segments (no empty ones at either end) without
// allocating; ok is false when there are more than cap(buf).
func split(path string, buf []string) ([]string, bool) {
	path = strings.Trim(path, "/")
	for path != "" {
		if len(buf) == cap(buf) {
			return nil, false
		}
		seg, rest, _ := strings.Cut(path, "/")
		buf = append(buf, seg)
		path = rest
	}
	return buf, true
}
