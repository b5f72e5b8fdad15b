package runtimeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/polltest"
)

// gofn is testdata/gofn, a real aws-lambda-go function, built once.
var gofn = &gobuildtest.Once{Pkg: "./testdata/gofn"}

// goFunction returns the path of the built gofn.
func goFunction(t *testing.T) string {
	t.Helper()
	return gofn.Path(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	gofn.Remove()
	os.Exit(code)
}

const testARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"

type harness struct {
	srv  *Server
	http *httptest.Server
	cmd  *exec.Cmd
	out  *bytes.Buffer
	exit chan struct{} // closed when the process exited
	err  error         // its exit status, set before exit is closed
}

// startGo runs the Go test function as a host process against a Server.
func startGo(t *testing.T) *harness {
	t.Helper()
	bin := goFunction(t)
	h := &harness{srv: New(Config{FunctionARN: testARN}), out: &bytes.Buffer{}, exit: make(chan struct{})}
	h.http = httptest.NewServer(h.srv)
	h.cmd = exec.Command(bin)
	h.cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(h.http.URL, "http://")}
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = h.cmd.Wait(); close(h.exit) }()
	t.Cleanup(func() {
		h.srv.Close()
		_ = h.cmd.Process.Kill()
		<-h.exit
		h.http.Close()
	})
	select {
	case <-h.srv.Ready():
	case <-h.exit:
		t.Fatalf("function exited before /next: %v\n%s", h.err, h.out)
	case <-time.After(20 * time.Second):
		t.Fatal("function never called /next")
	}
	return h
}

func (h *harness) invoke(t *testing.T, id, payload string) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := h.srv.Dispatch(ctx, invocation.Request{RequestID: id, Payload: []byte(payload), TraceID: "Root=1-abc"},
		time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("dispatch %s: %v", id, err)
	}
	return out
}

func TestGoSuccessSequential(t *testing.T) {
	h := startGo(t)
	for i := range 3 {
		id := fmt.Sprintf("req-%d", i)
		out := h.invoke(t, id, fmt.Sprintf(`{"action":"echo","value":"v%d"}`, i))
		if out.Err != nil {
			t.Fatalf("%s: unexpected error %+v", id, out.Err)
		}
		if want := fmt.Sprintf(`{"value":"v%d"}`, i); string(out.Payload) != want {
			t.Fatalf("%s: payload %s, want %s", id, out.Payload, want)
		}
	}
}

func TestGoHandlerError(t *testing.T) {
	h := startGo(t)
	out := h.invoke(t, "e1", `{"action":"error","value":"it broke"}`)
	if out.Err == nil {
		t.Fatalf("no error, payload %s", out.Payload)
	}
	if out.Err.ErrorType != "customError" || out.Err.ErrorMessage != "it broke" {
		t.Fatalf("error doc %+v", out.Err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Payload, &doc); err != nil || doc["errorMessage"] != "it broke" {
		t.Fatalf("payload %s (%v)", out.Payload, err)
	}
	// The process survives a handled error.
	if out := h.invoke(t, "e2", `{"action":"echo","value":"after"}`); string(out.Payload) != `{"value":"after"}` {
		t.Fatalf("after error: %s %+v", out.Payload, out.Err)
	}
}

func TestGoPanic(t *testing.T) {
	h := startGo(t)
	out := h.invoke(t, "p1", `{"action":"panic","value":"oh no"}`)
	if out.Err == nil || out.Err.ErrorMessage != "oh no" || out.Err.ErrorType != "string" {
		t.Fatalf("panic doc %+v payload %s", out.Err, out.Payload)
	}
	if len(out.Err.StackTrace) == 0 {
		t.Fatalf("panic without stack trace: %s", out.Payload)
	}
	select { // aws-lambda-go exits after a panic
	case <-h.exit:
	case <-time.After(10 * time.Second):
		t.Fatal("process still running after panic")
	}
}

func TestGoContextHeaders(t *testing.T) {
	h := startGo(t)
	deadline := time.Now().Add(42 * time.Second).Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := h.srv.Dispatch(ctx, invocation.Request{
		RequestID: "ctx-1", Payload: []byte(`{"action":"context"}`), TraceID: "Root=1-xyz",
		ClientContext: `{"custom":{"k":"cv"}}`,
	}, deadline)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		RequestID   string `json:"requestId"`
		ARN         string `json:"arn"`
		DeadlineMs  int64  `json:"deadlineMs"`
		TraceEnv    string `json:"traceEnv"`
		ClientEnv   string `json:"clientEnv"`
		HasDeadline bool   `json:"hasDeadline"`
	}
	if err := json.Unmarshal(out.Payload, &r); err != nil {
		t.Fatalf("%s: %v", out.Payload, err)
	}
	if r.RequestID != "ctx-1" || r.ARN != testARN || !r.HasDeadline || r.DeadlineMs != deadline.UnixMilli() ||
		r.TraceEnv != "Root=1-xyz" || r.ClientEnv != "cv" {
		t.Fatalf("function saw %+v, want id ctx-1, arn %s, deadline %d", r, testARN, deadline.UnixMilli())
	}
}

func TestResponseTooLarge(t *testing.T) {
	h := startGo(t)
	h.srv.cfg.MaxResponseBytes = 1000 // before any response is read
	out := h.invoke(t, "big", `{"action":"big","size":5000}`)
	if out.Err == nil || out.Err.ErrorType != ErrorTypeResponseSizeTooLarge ||
		!strings.Contains(out.Err.ErrorMessage, "(1000 bytes)") {
		t.Fatalf("outcome %+v payload %.100s", out.Err, out.Payload)
	}
}

func TestDispatchBusyCancelAndStale(t *testing.T) {
	h := startGo(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := h.srv.Dispatch(ctx, invocation.Request{RequestID: "slow", Payload: []byte(`{"action":"sleep"}`)},
			time.Now().Add(time.Hour))
		errc <- err
	}()
	// Wait until the runtime holds the event, then a second Dispatch is refused.
	polltest.Until(t, 10*time.Second, "the slow invocation to be current", func() bool { return h.srv.isCurrent("slow") })
	if _, err := h.srv.Dispatch(context.Background(), invocation.Request{RequestID: "x"}, time.Now()); !errors.Is(err, ErrBusy) {
		t.Fatalf("second dispatch: %v, want ErrBusy", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || errors.Is(err, ErrUndelivered) {
		t.Fatalf("cancelled dispatch: %v", err)
	}
	// A late answer for the abandoned invocation is rejected.
	resp, err := http.Post(h.http.URL+"/2018-06-01/runtime/invocation/slow/response", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("stale response got %d, want 400", resp.StatusCode)
	}
}

func TestInitErrorAndRoutes(t *testing.T) {
	srv := New(Config{})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()
	cases := []struct {
		method, path, body string
		hdr                string
		want               int
	}{
		{"GET", "/2018-06-01/runtime/invocation/next/x", "", "", 404},
		{"GET", "/nope", "", "", 404},
		{"POST", "/2018-06-01/runtime/invocation/next", "", "", 405},
		{"GET", "/2018-06-01/runtime/invocation/abc/response", "", "", 405},
		{"POST", "/2018-06-01/runtime/invocation/abc/response", "{}", "", 400},
		{"POST", "/2018-06-01/runtime/invocation/abc/error", "{}", "", 400},
		{"POST", "/2018-06-01/runtime/init/error", `{"errorMessage":"bad import","stackTrace":[]}`, "Runtime.ImportModuleError", 202},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(c.body))
		if c.hdr != "" {
			req.Header.Set(HeaderErrorType, c.hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
	select {
	case <-srv.InitFailed():
	default:
		t.Fatal("InitFailed not closed")
	}
	doc, raw := srv.InitError()
	if doc == nil || doc.ErrorType != "Runtime.ImportModuleError" || doc.ErrorMessage != "bad import" {
		t.Fatalf("init error %+v", doc)
	}
	if !strings.Contains(string(raw), `"errorType":"Runtime.ImportModuleError"`) {
		t.Fatalf("init payload %s lacks errorType", raw)
	}
}

func TestCloseUnblocks(t *testing.T) {
	srv := New(Config{})
	done := make(chan error, 1)
	go func() {
		_, err := srv.Dispatch(context.Background(), invocation.Request{RequestID: "a"}, time.Now())
		done <- err
	}()
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUndelivered) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dispatch still blocked after Close")
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/2018-06-01/runtime/invocation/next", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("/next after Close: %d", rec.Code)
	}
}

// deliver starts a Dispatch of id and takes it as the runtime would.
func deliver(t *testing.T, srv *Server, id string) <-chan Outcome {
	t.Helper()
	res := make(chan Outcome, 1)
	go func() {
		out, err := srv.Dispatch(context.Background(), invocation.Request{RequestID: id}, time.Now().Add(time.Minute))
		if err != nil {
			t.Errorf("dispatch %s: %v", id, err)
		}
		res <- out
	}()
	if p := srv.next(context.Background()); p == nil || p.req.RequestID != id {
		t.Fatalf("delivered %+v, want %s", p, id)
	}
	return res
}

func post(t *testing.T, srv *Server, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

func TestRawResponsesAndErrors(t *testing.T) {
	srv := New(Config{MaxResponseBytes: 10})
	defer srv.Close()

	res := deliver(t, srv, "big")
	if rec := post(t, srv, "/2018-06-01/runtime/invocation/big/response", strings.Repeat("x", 11), nil); rec.Code != 413 {
		t.Fatalf("oversized response: %d %s", rec.Code, rec.Body)
	}
	if out := <-res; out.Err == nil || out.Err.ErrorType != ErrorTypeResponseSizeTooLarge ||
		out.Err.ErrorMessage != "Response payload size exceeded maximum allowed payload size (10 bytes)." {
		t.Fatalf("outcome %+v", out.Err)
	}

	res = deliver(t, srv, "txt")
	rec := post(t, srv, "/2018-06-01/runtime/invocation/txt/error", "bad thing", map[string]string{HeaderErrorType: "Custom.Kind"})
	if rec.Code != 202 || rec.Body.String() != `{"status":"OK"}` {
		t.Fatalf("error post: %d %s", rec.Code, rec.Body)
	}
	out := <-res
	if out.Err.ErrorType != "Custom.Kind" || out.Err.ErrorMessage != "bad thing" {
		t.Fatalf("outcome %+v", out.Err)
	}
	var doc map[string]string
	if err := json.Unmarshal(out.Payload, &doc); err != nil || doc["errorType"] != "Custom.Kind" {
		t.Fatalf("payload %s", out.Payload)
	}
	// A second answer for the finished invocation is stale.
	if rec := post(t, srv, "/2018-06-01/runtime/invocation/txt/response", "{}", nil); rec.Code != 400 {
		t.Fatalf("stale response: %d", rec.Code)
	}

	res = deliver(t, srv, "ok")
	if rec := post(t, srv, "/2018-06-01/runtime/invocation/ok/response", "0123456789", nil); rec.Code != 202 {
		t.Fatalf("response at the limit: %d", rec.Code)
	}
	if out := <-res; out.Err != nil || string(out.Payload) != "0123456789" {
		t.Fatalf("outcome %+v %s", out.Err, out.Payload)
	}
}

// TestHeaderKeysCanonical guards the Runtime API's direct header map
// writes: a key that is not canonical would be sent as a second header.
func TestHeaderKeysCanonical(t *testing.T) {
	for _, k := range []string{HeaderRequestID, HeaderDeadlineMs, HeaderFunctionARN, HeaderTraceID, HeaderClientContext} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
	}
}
