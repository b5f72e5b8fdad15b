package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/vm/kernel"
	"github.com/flintdev/flint/internal/vm/vmtest"
)

// TestMicroVMDriver runs the aws-lambda-go function through
// flint server --sandbox-driver microvm: a cold start boots a VM, a warm
// invocation reuses it, the AWS CLI invokes it, and a runtime that exits
// is Runtime.ExitError as with the process driver; the cluster view names
// the host's driver; the Python and Node functions of
// TestPythonAndNodeRuntimes give the same results in microVMs (cold
// starts restored from snapshots). It needs QEMU and the
// guest kernel, and runs with FLINT_TEST_MICROVM=1 (boots take seconds
// under TCG).
func TestMicroVMDriver(t *testing.T) {
	if os.Getenv("FLINT_TEST_MICROVM") != "1" {
		t.Skip("FLINT_TEST_MICROVM=1 runs the microVM driver end to end")
	}
	requireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skipf("QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	vmtest.Lock(t) // one VM-booting test binary at a time on the machine
	// The server looks for the kernel in the machine's VM cache (its HOME
	// is a temporary one here): share the test's.
	t.Setenv("FLINT_VM_CACHE", kernel.DefaultCacheDir())
	vmInit := filepath.Join(t.TempDir(), "flint-vm-init")
	gobuildtest.Build(t, "../cmd/flint-vm-init", vmInit)
	data := t.TempDir()
	s := startServer(t, data, "--sandbox-driver", "microvm", "--vm-init", vmInit)
	c := s.lambda()
	createGoFn(t, c, "vm-hello", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })

	out := invoke(t, c, "vm-hello", map[string]any{"name": "vm", "action": "print", "lines": 2}, true)
	r := asReply(t, out)
	if r.Hello != "vm" || r.Invocations != 1 {
		t.Errorf("cold reply %+v", r)
	}
	if tail := decodeTail(t, out); !strings.Contains(tail, "Init Duration") || !strings.Contains(tail, "line 2 of 2") {
		t.Errorf("cold invocation's log tail:\n%s", tail)
	}
	out = invoke(t, c, "vm-hello", map[string]any{"name": "warm"}, false)
	if r2 := asReply(t, out); r2.Instance != r.Instance || r2.Invocations != 2 {
		t.Errorf("warm reply %+v after %+v: want the same sandbox", r2, r)
	}

	stdout, stderr, err := s.awsCLI(t, "lambda", "invoke", "--function-name", "vm-hello",
		"--cli-binary-format", "raw-in-base64-out", "--payload", `{"name":"cli"}`, filepath.Join(t.TempDir(), "out.json"))
	if err != nil || !strings.Contains(stdout, `"StatusCode": 200`) {
		t.Errorf("aws lambda invoke: %v\n%s\n%s", err, stdout, stderr)
	}

	out = invoke(t, c, "vm-hello", map[string]any{"action": "exit"}, false)
	var fe struct{ ErrorType string }
	_ = json.Unmarshal(out.Payload, &fe)
	if aws.ToString(out.FunctionError) != "Unhandled" || fe.ErrorType != "Runtime.ExitError" {
		t.Errorf("exit: function error %q, payload %s; want Runtime.ExitError", aws.ToString(out.FunctionError), out.Payload)
	}
	if !strings.Contains(s.log(), "driver=microvm") {
		t.Error("the server log does not name the microvm driver")
	}
	var v struct {
		Hosts []struct {
			Driver string `json:"driver"`
		} `json:"hosts"`
	}
	if code, err := httpGetJSON(s.url()+"/flint/v1/cluster", &v); err != nil || code != 200 || len(v.Hosts) != 1 || v.Hosts[0].Driver != "microvm" {
		t.Errorf("GET /flint/v1/cluster: %d %v %+v: want the host's driver, microvm", code, err, v.Hosts)
	}
	c.DeleteFunction(ctxT(t, 30*time.Second), &lambda.DeleteFunctionInput{FunctionName: aws.String("vm-hello")})

	// The same Python and Node functions as under the process driver,
	// cold-started from snapshots of booted guests.
	t.Run("python-node", func(t *testing.T) { checkPythonAndNode(t, c) })
	if !strings.Contains(s.log(), "snapshot saved") {
		t.Error("the server log shows no snapshot saved")
	}

	// The Python and Node functions through the AWS CLI, end to end.
	dir := t.TempDir()
	for _, rt := range []struct{ name, prefix, handler, dir string }{
		{"vm-py", "python3.", "handler.handler", "python"},
		{"vm-node", "nodejs", "index.handler", "node"},
	} {
		zip := filepath.Join(dir, rt.name+".zip")
		if err := os.WriteFile(zip, zipTestdata(t, rt.dir), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := s.awsCLI(t, "lambda", "create-function", "--function-name", rt.name, "--runtime", offeredRuntime(t, c, rt.prefix),
			"--handler", rt.handler, "--role", "arn:aws:iam::000000000000:role/x", "--zip-file", "fileb://"+zip); err != nil {
			t.Fatalf("aws lambda create-function (%s): %v\n%s", rt.dir, err, stderr)
		}
		resp := filepath.Join(dir, rt.name+".json")
		stdout, stderr, err := s.awsCLI(t, "lambda", "invoke", "--function-name", rt.name,
			"--cli-binary-format", "raw-in-base64-out", "--payload", `{"name":"cli"}`, resp)
		body, _ := os.ReadFile(resp)
		var r struct {
			Hello   string `json:"hello"`
			Runtime string `json:"runtime"`
		}
		if err != nil || !strings.Contains(stdout, `"StatusCode": 200`) || json.Unmarshal(body, &r) != nil || r.Hello != "cli" || r.Runtime != rt.dir {
			t.Errorf("aws lambda invoke (%s): %v\n%s\n%s\nresponse %s", rt.dir, err, stdout, stderr, body)
		}
	}
}
