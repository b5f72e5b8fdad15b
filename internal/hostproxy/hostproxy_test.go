package hostproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/workermanager"
)

// echoHost is a worker host whose sandboxes answer with their payload and
// log the request's fields.
// "block" waits until released; "crash" makes the sandbox unhealthy.
type echoHost struct {
	mu        sync.Mutex
	capacity  int
	sandboxes map[string]*echoSandbox
	seq       int
	release   chan struct{}
}

func newEchoHost(capacity int) *echoHost {
	return &echoHost{capacity: capacity, sandboxes: map[string]*echoSandbox{}, release: make(chan struct{})}
}

func (h *echoHost) CreateSandbox(ctx context.Context, fn *lambdafn.Function) (workermanager.Sandbox, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sandboxes) >= h.capacity {
		return nil, fmt.Errorf("%w: %d sandboxes", workermanager.ErrHostFull, h.capacity)
	}
	h.seq++
	sb := &echoSandbox{h: h, id: fmt.Sprintf("sb%d-%s", h.seq, fn.Name), healthy: true}
	h.sandboxes[sb.id] = sb
	return sb, nil
}

func (h *echoHost) live() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sandboxes)
}

type echoSandbox struct {
	h       *echoHost
	id      string
	mu      sync.Mutex
	healthy bool
	inited  bool
}

func (s *echoSandbox) ID() string { return s.id }

func (s *echoSandbox) Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error) {
	switch string(req.Payload) {
	case "block":
		<-s.h.release
	case "crash":
		s.mu.Lock()
		s.healthy = false
		s.mu.Unlock()
		return invocation.Result{RequestID: req.RequestID, FunctionError: invocation.ErrorUnhandled,
			ErrorType: "Runtime.ExitError", Payload: []byte(`{"errorType":"Runtime.ExitError"}`)}, nil
	}
	s.mu.Lock()
	inited := s.inited
	s.mu.Unlock()
	return invocation.Result{
		RequestID: req.RequestID, Payload: req.Payload, SandboxID: s.id, ExecutedVersion: "$LATEST",
		Log:      []byte(fmt.Sprintf("START %s ctx=%s trace=%s inited=%v\n", req.RequestID, req.ClientContext, req.TraceID, inited)),
		Duration: 3 * time.Millisecond, InitDuration: 7 * time.Millisecond,
	}, nil
}

func (s *echoSandbox) Init(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inited = true
	return nil
}

func (s *echoSandbox) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

func (s *echoSandbox) Destroy(ctx context.Context) error {
	s.h.mu.Lock()
	delete(s.h.sandboxes, s.id)
	s.h.mu.Unlock()
	s.mu.Lock()
	s.healthy = false
	s.mu.Unlock()
	return nil
}

func serve(t *testing.T, h *echoHost, alive func(string) bool) (*Server, string) {
	t.Helper()
	srv, err := NewServer(ServerConfig{Host: h, Key: testKey, OwnerAlive: alive, OrphanCheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close(context.Background())
	})
	return srv, hs.Listener.Addr().String()
}

// testKey is the cluster key of the tests' servers and clients.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func client(t *testing.T, addr, owner string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{HostID: "h1", Addr: addr, Owner: owner, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var fn = &lambdafn.Function{Account: "000000000000", Name: "f", Version: "$LATEST", MemorySize: 128}

// TestRoundTrip: create, init, invoke with 6 MB each way and every result
// field, a crash reported as unhealthy, destroy.
func TestRoundTrip(t *testing.T) {
	h := newEchoHost(10)
	_, addr := serve(t, h, nil)
	c := client(t, addr, "front/1")
	ctx := context.Background()

	sb, err := c.CreateSandbox(ctx, fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.(workermanager.Initializer).Init(ctx); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 6<<20)
	res, err := sb.Invoke(ctx, invocation.Request{RequestID: "r1", Payload: big, ClientContext: "cc", TraceID: "tr"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Payload, big) || res.RequestID != "r1" || res.SandboxID != sb.ID() || res.ExecutedVersion != "$LATEST" ||
		res.Duration != 3*time.Millisecond || res.InitDuration != 7*time.Millisecond ||
		string(res.Log) != "START r1 ctx=cc trace=tr inited=true\n" {
		t.Fatalf("result %+v (payload %d bytes)", res, len(res.Payload))
	}
	if !sb.Healthy() {
		t.Fatal("unhealthy after a good invocation")
	}
	res, err = sb.Invoke(ctx, invocation.Request{RequestID: "r2", Payload: []byte("crash")})
	if err != nil || res.FunctionError != invocation.ErrorUnhandled || res.ErrorType != "Runtime.ExitError" {
		t.Fatalf("crash: %+v, %v", res, err)
	}
	if sb.Healthy() {
		t.Fatal("healthy after the sandbox crashed")
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.live(); n != 0 {
		t.Fatalf("%d sandboxes left on the host", n)
	}
	if _, err := sb.Invoke(ctx, invocation.Request{RequestID: "r3"}); err == nil {
		t.Fatal("invoked a destroyed sandbox")
	}
}

// TestErrors: a full host answers ErrHostFull; a host nobody listens on
// answers ErrHostUnreachable; Gone ends a call in flight at once and
// fails later calls without trying.
func TestErrors(t *testing.T) {
	h := newEchoHost(1)
	_, addr := serve(t, h, nil)
	c := client(t, addr, "front/1")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, fn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSandbox(ctx, fn); !errors.Is(err, workermanager.ErrHostFull) {
		t.Fatalf("second sandbox on a host for one: %v, want ErrHostFull", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	if _, err := client(t, dead, "front/1").CreateSandbox(ctx, fn); !errors.Is(err, workermanager.ErrHostUnreachable) {
		t.Fatalf("create on a dead host: %v, want ErrHostUnreachable", err)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := sb.Invoke(ctx, invocation.Request{RequestID: "b", Payload: []byte("block")})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the call reach the host
	c.Gone()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, workermanager.ErrHostUnreachable) {
			t.Fatalf("call in flight when the host was lost: %v, want a plain error (it may have run)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call in flight did not end when the host was marked gone")
	}
	close(h.release)
	if _, err := sb.Invoke(ctx, invocation.Request{RequestID: "c"}); !errors.Is(err, workermanager.ErrHostUnreachable) {
		t.Fatalf("call after Gone: %v, want ErrHostUnreachable", err)
	}
	if sb.Healthy() {
		t.Fatal("sandbox of a lost host reports healthy")
	}
}

// TestOrphansReaped: the sandboxes of an owner found dead on two checks are
// destroyed; a live owner's stay.
func TestOrphansReaped(t *testing.T) {
	h := newEchoHost(10)
	var deadOwner atomic.Value
	deadOwner.Store("")
	srv, addr := serve(t, h, func(owner string) bool { return owner != deadOwner.Load().(string) })
	ctx := context.Background()
	for _, owner := range []string{"a/1", "b/1", "b/1"} {
		if _, err := client(t, addr, owner).CreateSandbox(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	deadOwner.Store("b/1")
	deadline := time.Now().Add(5 * time.Second)
	for srv.Sandboxes() != 1 || h.live() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("served %d, host holds %d, want 1 (a's) after b died", srv.Sandboxes(), h.live())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkerPortToken: the worker port serves only requests carrying the
// cluster's token. A request without one, or a node with another key, is
// refused (401) before anything runs, and the client tells its manager to
// place elsewhere.
func TestWorkerPortToken(t *testing.T) {
	h := newEchoHost(10)
	_, addr := serve(t, h, nil)
	for _, auth := range []string{"", "Bearer ", "Bearer nottherighttoken", "Basic ZmxpbnQ6ZmxpbnQ="} {
		req, _ := http.NewRequest("POST", "http://"+addr+prefix+"/sandboxes", strings.NewReader(`{"account":"000000000000","name":"f","version":"$LATEST","memorySize":128}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthorized"`) {
			t.Errorf("Authorization %q: %d %s, want 401 unauthorized", auth, resp.StatusCode, body)
		}
	}
	other, err := NewClient(ClientConfig{HostID: "h1", Addr: addr, Owner: "front/1", Key: []byte("another cluster's key, 32 bytes!")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateSandbox(context.Background(), fn); !errors.Is(err, workermanager.ErrHostUnreachable) {
		t.Fatalf("CreateSandbox with another key: %v, want ErrHostUnreachable", err)
	}
	h.mu.Lock()
	n := len(h.sandboxes)
	h.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sandboxes created by refused requests", n)
	}
	// The right key works.
	sb, err := client(t, addr, "front/1").CreateSandbox(context.Background(), fn)
	if err != nil {
		t.Fatalf("CreateSandbox with the cluster key: %v", err)
	}
	sb.Destroy(context.Background())
	if _, err := NewClient(ClientConfig{HostID: "h1", Addr: addr, Key: []byte("short")}); err == nil {
		t.Fatal("NewClient accepted a 5-byte key")
	}
	if _, err := NewServer(ServerConfig{Host: h}); err == nil {
		t.Fatal("NewServer accepted no key")
	}
}

// TestTLS: with ClientConfig.TLS the client speaks HTTPS and checks the
// host's certificate; a client that does not trust it cannot reach it.
func TestTLS(t *testing.T) {
	h := newEchoHost(10)
	srv, err := NewServer(ServerConfig{Host: h, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.StartTLS()
	t.Cleanup(func() {
		hs.Close()
		srv.Close(context.Background())
	})
	addr := hs.Listener.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())
	c, err := NewClient(ClientConfig{HostID: "h1", Addr: addr, Owner: "front/1", Key: testKey, TLS: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(context.Background(), fn)
	if err != nil {
		t.Fatalf("CreateSandbox over TLS: %v", err)
	}
	res, err := sb.Invoke(context.Background(), invocation.Request{RequestID: "r1", Payload: []byte(`"hi"`)})
	if err != nil || string(res.Payload) == "" {
		t.Fatalf("Invoke over TLS: %+v %v", res, err)
	}
	sb.Destroy(context.Background())
	untrusting, err := NewClient(ClientConfig{HostID: "h1", Addr: addr, Owner: "front/1", Key: testKey, TLS: &tls.Config{RootCAs: x509.NewCertPool()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.CreateSandbox(context.Background(), fn); err == nil {
		t.Fatal("a client that does not trust the host's certificate created a sandbox")
	}
	if _, err := client(t, addr, "front/1").CreateSandbox(context.Background(), fn); err == nil {
		t.Fatal("a plain HTTP client created a sandbox on a TLS worker port")
	}
}
