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
	"github.com/flintdev/flint/internal/polltest"
)

// functionProcesses returns the pids of host processes whose environment
// names function fn (the sandboxed runtimes of fn).
func functionProcesses(fn string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "AWS_LAMBDA_FUNCTION_NAME="+fn {
				pids = append(pids, filepath.Base(filepath.Dir(p)))
			}
		}
	}
	return pids
}

// TestShutdownLeavesNothing sends SIGTERM while invocations are in flight:
// they finish, the server exits, and no sandbox process or cgroup remains.
func TestShutdownLeavesNothing(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	const fn = "shutdown-probe"
	createGoFn(t, c, fn, nil)

	// Two invocations in flight at SIGTERM, in two sandboxes.
	done := make(chan *lambda.InvokeOutput, 2)
	for range 2 {
		go func() {
			b, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 1500, "name": "inflight"})
			out, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: b})
			if err != nil {
				t.Errorf("in-flight invocation: %v", err)
			}
			done <- out
		}()
	}
	// A runtime runs before its sandbox is logged as created: wait for
	// both. This server's sandboxes, by the ids in its log, and their
	// cgroups (logCgroupDirs waits for a claimed one's v1 rename).
	polltest.Check(t, 20*time.Second, "two sandboxes running and logged", func() error {
		if n := len(functionProcesses(fn)); n < 2 {
			return errorf("%d sandboxes running, want 2", n)
		}
		if n := len(sandboxIDs(s.log())); n < 2 {
			return errorf("%d sandboxes logged as created, want 2", n)
		}
		return nil
	})
	ours := logCgroupDirs(s.log())
	if len(ours) < 2 {
		t.Errorf("found %d sandbox cgroups of this server, want at least 2", len(ours))
	}

	s.stop()
	for range 2 {
		if out := <-done; out != nil && (out.FunctionError != nil || !strings.Contains(string(out.Payload), "inflight")) {
			t.Errorf("in-flight invocation did not finish cleanly: %s", out.Payload)
		}
	}
	if pids := functionProcesses(fn); len(pids) > 0 {
		t.Errorf("sandbox processes left after shutdown: %v", pids)
	}
	for _, cg := range ours {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup left after shutdown: %s", cg)
		}
	}
	for _, cg := range ours {
		if parent := filepath.Dir(cg); parent != "." {
			if _, err := os.Stat(parent); err == nil {
				t.Errorf("cgroup parent left after shutdown: %s", parent)
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), s.data) {
		t.Errorf("mounts under the data dir left after shutdown")
	}
}

// TestCrashLeftoversRemovedOnRestart: after kill -9 the sandboxes die with
// the server; the cgroups they leave are removed when a server starts again
// on the same data dir.
func TestCrashLeftoversRemovedOnRestart(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	c := s.lambda()
	const fn = "crash-probe"
	createGoFn(t, c, fn, nil)
	asReply(t, invoke(t, c, fn, map[string]any{"name": "before-crash"}, false))
	ours := logCgroupDirs(s.log())
	if len(ours) == 0 {
		t.Fatal("found no sandbox cgroup of this server")
	}

	s.kill()
	polltest.Check(t, 10*time.Second, "the sandboxes to die with the server", func() error {
		if pids := functionProcesses(fn); len(pids) > 0 {
			return errorf("sandbox processes alive after kill -9: %v", pids)
		}
		return nil
	})

	s = startServer(t, data)
	for _, cg := range ours {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s of the crashed run still there after restart", cg)
		}
	}
	asReply(t, invoke(t, s.lambda(), fn, map[string]any{"name": "after-crash"}, false))
}

// TestCleanupAfterKill: a server killed with kill -9 and never started
// again leaves its sandboxes' cgroups; `flint server --cleanup --data DIR`
// removes them and their parent, and refuses while a server runs on DIR.
func TestCleanupAfterKill(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	c := s.lambda()
	const fn = "cleanup-probe"
	createGoFn(t, c, fn, nil)
	asReply(t, invoke(t, c, fn, map[string]any{"name": "before-kill"}, false))
	ours := logCgroupDirs(s.log())
	if len(ours) == 0 {
		t.Fatal("found no sandbox cgroup of this server")
	}
	if out, err := exec.Command(flintBin, "server", "--cleanup", "--data", data).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "another Flint server is running") {
		t.Errorf("--cleanup beside a running server: %v\n%s", err, out)
	}

	s.kill()
	for _, cg := range ours {
		if _, err := os.Stat(cg); err != nil {
			t.Fatalf("cgroup %s gone before --cleanup: %v", cg, err)
		}
	}
	out, err := exec.Command(flintBin, "server", "--cleanup", "--data", data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed") {
		t.Fatalf("flint server --cleanup: %v\n%s", err, out)
	}
	for _, cg := range ours {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s still there after --cleanup", cg)
		}
		if parent := filepath.Dir(cg); dirExists(parent) {
			t.Errorf("cgroup parent %s still there after --cleanup", parent)
		}
	}
}

func dirExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
