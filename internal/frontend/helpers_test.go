package frontend

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/layers"
	"github.com/flintdev/flint/internal/metadata"
)

// memCode is a real, in-memory CodeStore: it checks that the bytes are a
// zip and keeps them by digest.
type memCode struct {
	mu   sync.Mutex
	zips map[string][]byte // guarded by mu
}

func (c *memCode) Put(_ context.Context, data []byte) (CodePackage, error) {
	if _, err := zip.NewReader(bytes.NewReader(data), int64(len(data))); err != nil {
		return CodePackage{}, lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Could not unzip uploaded file. Please check your file, then try to upload again.")
	}
	sum := sha256.Sum256(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zips == nil {
		c.zips = map[string][]byte{}
	}
	d := hex.EncodeToString(sum[:])
	c.zips[d] = data
	return CodePackage{Digest: d, Sha256: base64.StdEncoding.EncodeToString(sum[:]), Size: int64(len(data))}, nil
}

// echoInvoker answers with the payload it was given. A payload of
// {"fail":...} is an Unhandled function error and {"throttle":...} a
// TooManyRequestsException. It records invocations and retirements.
type echoInvoker struct {
	mu      sync.Mutex
	calls   []invocation.Request // guarded by mu
	fns     []metadata.Function  // guarded by mu
	retired []string             // guarded by mu
}

func (e *echoInvoker) Invoke(_ context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error) {
	e.mu.Lock()
	e.calls = append(e.calls, req)
	e.fns = append(e.fns, *fn)
	e.mu.Unlock()
	p := string(req.Payload)
	if strings.Contains(p, `"throttle"`) {
		return invocation.Result{}, &lambdaerr.Error{Type: lambdaerr.TooManyRequests, Message: "Rate Exceeded.",
			Reason: "ReservedFunctionConcurrentInvocationLimitExceeded", RetryAfterSeconds: 2}
	}
	log := "START RequestId: " + req.RequestID + " Version: $LATEST\n" + strings.Repeat("x", 5000) +
		"\nEND RequestId: " + req.RequestID + "\nREPORT RequestId: " + req.RequestID + "\n"
	res := invocation.Result{RequestID: req.RequestID, Payload: req.Payload, Log: []byte(log), ExecutedVersion: fn.Version}
	if strings.Contains(p, `"fail"`) {
		res.FunctionError = invocation.ErrorUnhandled
		res.ErrorType = "Runtime.ExitError"
		res.Payload = []byte(`{"errorMessage":"boom","errorType":"Runtime.ExitError"}`)
	}
	return res, nil
}

func (e *echoInvoker) Retire(_ context.Context, account, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.retired = append(e.retired, account+"/"+name)
	return nil
}

func (e *echoInvoker) retiredCount(account, name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.retired {
		if r == account+"/"+name {
			n++
		}
	}
	return n
}

type asyncRecorder struct {
	mu   sync.Mutex
	reqs []invocation.Request // guarded by mu
}

func (a *asyncRecorder) Enqueue(_ context.Context, _ *metadata.Function, req invocation.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = append(a.reqs, req)
	return nil
}

type staticRuntimes []string

func (s staticRuntimes) Names() []string { return s }

type logPurger struct {
	mu     sync.Mutex
	purged []string // guarded by mu
}

func (l *logPurger) Purge(_ context.Context, account, function string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.purged = append(l.purged, account+"/"+function)
	return nil
}

type testEnv struct {
	h       *Handler
	srv     *httptest.Server
	store   *metadata.Store
	code    *memCode
	invoker *echoInvoker
	async   *asyncRecorder
	logs    *logPurger
	client  *lambda.Client
	layers  *layers.Store
	bb      *backbone.Backbone
}

var testTime = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

// newEnv starts a frontend on the real metadata store (embedded NATS),
// mounted on a ServeMux as the server mounts it, and an SDK client for it.
func newEnv(t testing.TB) *testEnv { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the Config changed by mod before New.
func newEnvWith(t testing.TB, mod func(*Config, *backbone.Backbone)) *testEnv {
	t.Helper()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("backbone: %v", err)
	}
	t.Cleanup(bb.Close)
	store, err := metadata.NewStore(context.Background(), bb.JetStream())
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	e := &testEnv{store: store, code: &memCode{}, invoker: &echoInvoker{}, async: &asyncRecorder{}, logs: &logPurger{}, bb: bb}
	if e.layers, err = layers.New(context.Background(), layers.Config{JS: bb.JetStream()}); err != nil {
		t.Fatalf("layers: %v", err)
	}
	cfg := Config{
		Functions: store, Code: e.code, Invoker: e.invoker, Async: e.async, Logs: e.logs, Layers: e.layers,
		Runtimes: staticRuntimes{"provided.al2023", "provided.al2", "python3.11", "nodejs20.x"},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Clock:    func() time.Time { return testTime },
	}
	if mod != nil {
		mod(&cfg, bb)
	}
	e.h, err = New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.h.Close(ctx)
	})
	// Every path to the frontend, as the server mounts it.
	mux := http.NewServeMux()
	mux.Handle("/", e.h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.client = lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:   e.srv.Client(),
		// One attempt: error tests must see the first answer.
		RetryMaxAttempts: 1,
	})
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// zipOf builds a zip holding the given files.
func zipOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const testRole = "arn:aws:iam::000000000000:role/lambda-role"
