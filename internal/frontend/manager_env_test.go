package frontend

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/workermanager"
)

// This file builds a frontend on the real Worker Manager and Placement
// Service, with an in-test worker host whose sandboxes echo the payload,
// record what they were built from, and can be held at a gate.

type echoHost struct {
	mu        sync.Mutex
	sandboxes []*echoSandbox // guarded by mu

	inFlight, maxFlight atomic.Int64
	// hold, when not nil, is waited on by every invocation (after it
	// announced itself on entered).
	hold    atomic.Pointer[chan struct{}]
	entered chan string
}

func (h *echoHost) CreateSandbox(_ context.Context, fn *metadata.Function) (workermanager.Sandbox, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sb := &echoSandbox{host: h, id: fmt.Sprintf("sb-%d", len(h.sandboxes)+1), fn: *fn}
	h.sandboxes = append(h.sandboxes, sb)
	return sb, nil
}

func (h *echoHost) created() []*echoSandbox {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*echoSandbox(nil), h.sandboxes...)
}

// echoSandbox has the optional Init ability of provisioned concurrency.
type echoSandbox struct {
	host    *echoHost
	id      string
	fn      metadata.Function
	inits   atomic.Int32
	invokes atomic.Int32
}

func (s *echoSandbox) ID() string    { return s.id }
func (s *echoSandbox) Healthy() bool { return true }
func (s *echoSandbox) Destroy(context.Context) error {
	return nil
}

func (s *echoSandbox) Init(context.Context) error {
	s.inits.Add(1)
	return nil
}

func (s *echoSandbox) Invoke(_ context.Context, req invocation.Request) (invocation.Result, error) {
	first := s.invokes.Add(1) == 1
	n := s.host.inFlight.Add(1)
	defer s.host.inFlight.Add(-1)
	for m := s.host.maxFlight.Load(); n > m && !s.host.maxFlight.CompareAndSwap(m, n); m = s.host.maxFlight.Load() {
	}
	if hold := s.host.hold.Load(); hold != nil {
		s.host.entered <- s.id
		<-*hold
	}
	res := invocation.Result{RequestID: req.RequestID, Payload: req.Payload, ExecutedVersion: s.fn.Version, SandboxID: s.id}
	if first && s.inits.Load() == 0 {
		res.InitDuration = time.Millisecond
	}
	return res, nil
}

var (
	_ workermanager.Host        = (*echoHost)(nil)
	_ workermanager.Initializer = (*echoSandbox)(nil)
)

type managerEnv struct {
	h      *Handler
	m      *workermanager.Manager
	host   *echoHost
	store  *metadata.Store
	client *lambda.Client
	srv    *httptest.Server
}

// newManagerEnv starts the frontend on the real Worker Manager with an
// account limit of limit.
func newManagerEnv(t *testing.T, limit int) *managerEnv {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("backbone: %v", err)
	}
	t.Cleanup(bb.Close)
	store, err := metadata.NewStore(context.Background(), bb.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := placement.New(placement.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Heartbeat(placement.HostStatus{HostID: "h1", MemoryMB: 64 * 1024, MaxSandboxes: 100}); err != nil {
		t.Fatal(err)
	}
	host := &echoHost{entered: make(chan string, 100)}
	m, err := workermanager.New(workermanager.Config{
		Placement:          svc,
		Hosts:              func(string) (workermanager.Host, bool) { return host, true },
		AccountConcurrency: limit,
		Logger:             logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	h, err := New(Config{
		Functions: store, Code: &memCode{}, Invoker: m,
		Runtimes: staticRuntimes{"provided.al2023"},
		// ConcurrentExecutions comes from the manager's AccountConcurrency.
		Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range Prefixes {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:  srv.Client(), RetryMaxAttempts: 1,
	})
	return &managerEnv{h: h, m: m, host: host, store: store, client: client, srv: srv}
}

func (e *managerEnv) create(t *testing.T, name string) {
	t.Helper()
	if _, err := e.client.CreateFunction(context.Background(), createInput(name, zipOf(t, map[string]string{"bootstrap": name}))); err != nil {
		t.Fatalf("CreateFunction %s: %v", name, err)
	}
}

// recordingController is a ConcurrencyController that records what it is
// told.
type recordingController struct {
	mu    sync.Mutex
	calls []string // guarded by mu
}

func (r *recordingController) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recordingController) SetReservedConcurrency(_, name string, n int) {
	r.record(fmt.Sprintf("reserved %s %d", name, n))
}

func (r *recordingController) ClearReservedConcurrency(_, name string) {
	r.record("unreserved " + name)
}

func (r *recordingController) SetProvisionedConcurrency(fn *metadata.Function, n int) error {
	r.record(fmt.Sprintf("provisioned %s:%s %d", fn.Name, fn.Version, n))
	return nil
}

func (r *recordingController) ClearProvisionedConcurrency(fn *metadata.Function) {
	r.record("unprovisioned " + fn.Name + ":" + fn.Version)
}

func (r *recordingController) ProvisionedConcurrency(*metadata.Function) (concurrency.ProvisionedStatus, bool) {
	return concurrency.ProvisionedStatus{}, false
}
