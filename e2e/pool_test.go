package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestDefaultServerClaimsPreparedSandboxes: the server as the README
// starts it (no flags) keeps sandboxes prepared and its cold starts claim
// them: the driver's claim step shows in /metrics, and the function
// answers as it does from a sandbox created on demand.
func TestDefaultServerClaimsPreparedSandboxes(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	claims := func() float64 {
		fams, err := s.scrape()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := metricValue(fams, "flint_sandbox_create_step_seconds", map[string]string{"step": "claim-cgroup"})
		return v
	}
	// The pool prepares its first sandbox at start; each cold start
	// below (a new function) claims one if it is ready, which a busy
	// machine may delay: a few tries, bounded.
	for i := range 5 {
		name := "pooled-" + strconv.Itoa(i)
		createGoFn(t, c, name, nil)
		out := invoke(t, c, name, map[string]any{"name": name}, true)
		if r := asReply(t, out); r.Hello != name {
			t.Fatalf("reply %+v", r)
		}
		if tail := decodeTail(t, out); !strings.Contains(tail, "Init Duration") {
			t.Errorf("cold invocation without Init Duration:\n%s", tail)
		}
		if claims() > 0 {
			return
		}
	}
	t.Errorf("5 cold starts on the default server, none claimed a prepared sandbox")
}

// TestInitStartsBeforeHeavyInitialisers: the flint binary started as a
// sandbox init (when no flint-sandbox-init lies next to it) runs the init
// before the package initialisers of the rest of the binary (the server,
// NATS, the AWS SDK): GODEBUG=inittrace=1 lists every package initialised before
// the init ends (here at once: it refuses to run outside a sandbox).
func TestInitStartsBeforeHeavyInitialisers(t *testing.T) {
	cmd := exec.Command(flintBin, "__flint_sandbox_init")
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "not started by the process sandbox driver") {
		t.Fatalf("flint as init outside a sandbox: %v\n%s", err, out)
	}
	var inits int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "init" {
			continue
		}
		inits++
		for _, heavy := range []string{"github.com/flintdev/flint/internal/server", "github.com/nats-io/nats-server/v2/server", "github.com/aws/aws-sdk-go-v2/service/lambda", "github.com/prometheus/client_golang/prometheus"} {
			if f[1] == heavy {
				t.Errorf("package %s initialised before the sandbox init ran", heavy)
			}
		}
	}
	if inits == 0 {
		t.Errorf("no inittrace output: %s", out)
	}
}
