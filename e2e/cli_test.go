package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/polltest"
)

// flintCLI runs the flint binary's client commands against s.
func (s *flintServer) flintCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, flintBin, append([]string{"--endpoint", s.url()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestFlintCLI runs the common loop with flint's own client: deploy a
// directory, invoke, logs, list, redeploy, delete.
func TestFlintCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	run := func(args ...string) string {
		t.Helper()
		out, err := s.flintCLI(t, args...)
		if err != nil {
			t.Fatalf("flint %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	dir := filepath.Join(t.TempDir(), "greeter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("testdata/python/handler.py")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "handler.py"), src, 0o644)
	python := offeredRuntime(t, s.lambda(), "python3.")

	if out := run("deploy", dir, "--runtime", python, "--handler", "handler.handler", "--env", "GREETING=hi", "--memory", "256"); !strings.Contains(out, "created arn:aws:lambda:us-east-1:000000000000:function:greeter") {
		t.Errorf("deploy: %s", out)
	}
	out := run("invoke", "greeter", "--payload", `{"name":"cli"}`, "--log")
	if !strings.Contains(out, `"hello": "cli"`) || !strings.Contains(out, "REPORT RequestId:") {
		t.Errorf("invoke: %s", out)
	}
	if out := run("list"); !strings.Contains(out, "greeter") || !strings.Contains(out, python) {
		t.Errorf("list: %s", out)
	}
	polltest.Check(t, 10*time.Second, "the invocation in flint logs", func() error {
		out := run("logs", "greeter")
		if !strings.Contains(out, "START RequestId:") || !strings.Contains(out, "handled  for cli") {
			return errorf("logs so far: %q", out)
		}
		return nil
	})
	if out := run("deploy", dir, "--runtime", python, "--handler", "handler.handler", "--timeout", "5"); !strings.Contains(out, "updated") {
		t.Errorf("redeploy: %s", out)
	}
	if out, err := s.flintCLI(t, "invoke", "greeter", "--payload", `{"action":"error","name":"x"}`); err == nil || !strings.Contains(out, "boom: x") {
		t.Errorf("failing invoke: err %v, out %s", err, out)
	}
	// A redeploy changes the code and only the settings it is given.
	if out := run("deploy", dir); !strings.Contains(out, "updated") {
		t.Errorf("redeploy without flags: %s", out)
	}
	cfg, err := s.lambda().GetFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("greeter")})
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Runtime) != python || aws.ToString(cfg.Handler) != "handler.handler" || aws.ToInt32(cfg.MemorySize) != 256 ||
		aws.ToInt32(cfg.Timeout) != 5 || cfg.Environment == nil || cfg.Environment.Variables["GREETING"] != "hi" {
		t.Errorf("after redeploy without flags: runtime %s handler %s memory %d timeout %d env %+v",
			cfg.Runtime, aws.ToString(cfg.Handler), aws.ToInt32(cfg.MemorySize), aws.ToInt32(cfg.Timeout), cfg.Environment)
	}
	if out := run("invoke", "greeter", "--payload", `{"name":"again"}`); !strings.Contains(out, `"hello": "again"`) {
		t.Errorf("invoke after redeploy: %s", out)
	}

	// A package without its entrypoint is a function error
	// (Runtime.InvalidEntrypoint), not a server error.
	empty := filepath.Join(t.TempDir(), "noboot")
	os.MkdirAll(empty, 0o755)
	os.WriteFile(filepath.Join(empty, "README"), []byte("no bootstrap here"), 0o644)
	run("deploy", empty)
	for i := 0; i < 2; i++ {
		res, err := s.lambda().Invoke(ctxT(t, 30*time.Second), &lambda.InvokeInput{FunctionName: aws.String("noboot")})
		if err != nil {
			t.Fatalf("invoke without entrypoint: %v", err)
		}
		if aws.ToString(res.FunctionError) != "Unhandled" || !strings.Contains(string(res.Payload), `"errorType":"Runtime.InvalidEntrypoint"`) ||
			strings.Contains(string(res.Payload), "no such file") {
			t.Errorf("invoke without entrypoint: %q %s", aws.ToString(res.FunctionError), res.Payload)
		}
	}
	run("delete", "greeter")
	if out, err := s.flintCLI(t, "invoke", "greeter"); err == nil || !strings.Contains(out, "ResourceNotFoundException") {
		t.Errorf("invoke after delete: err %v, out %s", err, out)
	}
}
