package runtimes

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/runtimeapi"
)

// client is one runtime client process running on the host against a
// runtimeapi.Server.
type client struct {
	srv  *runtimeapi.Server
	out  *outputtest.Buffer
	exit chan struct{}
	err  error
}

const testARN = "arn:aws:lambda:us-east-1:123456789012:function:myfn"

// catalog returns a Catalog for this host, skipping when lang's interpreter
// is missing.
func catalog(t *testing.T, runtimePrefix string) (*Catalog, Runtime) {
	t.Helper()
	c, err := New(Config{AssetDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Names() {
		if strings.HasPrefix(n, runtimePrefix) {
			r, _ := c.Lookup(n)
			return c, r
		}
	}
	t.Skipf("no %s runtime on this host (interpreter missing): %v", runtimePrefix, c.Names())
	return nil, Runtime{}
}

// startClient writes files into a fresh task root and starts rt's client
// for handler, with /var/runtime mapped to rt.RuntimeDir.
func startClient(t *testing.T, rt Runtime, handler string, files map[string]string) *client {
	t.Helper()
	taskRoot := t.TempDir()
	for name, body := range files {
		p := filepath.Join(taskRoot, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &client{srv: runtimeapi.New(runtimeapi.Config{FunctionARN: testARN}), out: &outputtest.Buffer{}, exit: make(chan struct{})}
	ts := httptest.NewServer(c.srv)
	argv := rt.Command()
	for i, a := range argv {
		argv[i] = strings.Replace(a, "/var/runtime", rt.RuntimeDir, 1)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{
		"AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(ts.URL, "http://"),
		"LAMBDA_TASK_ROOT=" + taskRoot,
		"_HANDLER=" + handler,
		"AWS_LAMBDA_FUNCTION_NAME=myfn",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/myfn",
		"AWS_LAMBDA_LOG_STREAM_NAME=2026/01/01/[$LATEST]abc",
		"PATH=/usr/bin:/bin",
	}, rt.Env...)
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); close(c.exit) }()
	t.Cleanup(func() {
		c.srv.Close()
		_ = cmd.Process.Kill()
		<-c.exit
		ts.Close()
	})
	return c
}

// ready waits for the client's first /next.
func (c *client) ready(t *testing.T) {
	t.Helper()
	select {
	case <-c.srv.Ready():
	case <-c.srv.InitFailed():
		doc, _ := c.srv.InitError()
		t.Fatalf("init failed: %+v\n%s", doc, c.out)
	case <-c.exit:
		t.Fatalf("client exited during init: %v\n%s", c.err, c.out)
	case <-time.After(20 * time.Second):
		t.Fatalf("client not ready after 20s\n%s", c.out)
	}
}

// initError waits for the client to post /init/error.
func (c *client) initError(t *testing.T) *runtimeapi.ErrorDoc {
	t.Helper()
	select {
	case <-c.srv.InitFailed():
		doc, _ := c.srv.InitError()
		return doc
	case <-c.srv.Ready():
		t.Fatalf("client became ready, want init error\n%s", c.out)
	case <-time.After(20 * time.Second):
		t.Fatalf("no init error after 20s\n%s", c.out)
	}
	return nil
}

func (c *client) invoke(t *testing.T, id, payload string, timeout time.Duration) runtimeapi.Outcome {
	t.Helper()
	c.ready(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.srv.Dispatch(ctx, invocation.Request{RequestID: id, Payload: []byte(payload)}, time.Now().Add(timeout))
	if err != nil {
		t.Fatalf("dispatch %s: %v\noutput:\n%s", id, err, c.out)
	}
	return out
}

func decode(t *testing.T, out runtimeapi.Outcome) map[string]any {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("unexpected function error %+v: %s", out.Err, out.Payload)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Payload, &m); err != nil {
		t.Fatalf("payload %s: %v", out.Payload, err)
	}
	return m
}

// waitOutput polls until the client's output contains s.
func (c *client) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%s", s, c.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
