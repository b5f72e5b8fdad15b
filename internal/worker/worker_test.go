package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
)

var reportRE = regexp.MustCompile(`(?m)^REPORT RequestId: (\S+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\tMax Memory Used: \d+ MB\t(Init Duration: \d+\.\d\d ms\t)?$`)

func TestGoWarmReuseAndLogFraming(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("aaa111", goCode(t))
		s, err := e.w.CreateSandbox(context.Background(), function("gofn", "provided.al2023", "bootstrap", "aaa111"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			id := fmt.Sprintf("req-%d", i)
			res := e.invoke(t, s, id, fmt.Sprintf(`{"action":"echo","value":"v%d"}`, i))
			if res.FunctionError != "" || string(res.Payload) != fmt.Sprintf(`{"value":"v%d"}`, i) {
				t.Fatalf("%s: %s %s\n%s", id, res.FunctionError, res.Payload, res.Log)
			}
			if res.ColdStart != (i == 0) || (res.InitDuration > 0) != (i == 0) || res.SandboxID != s.ID() {
				t.Fatalf("%s: cold=%v init=%v", id, res.ColdStart, res.InitDuration)
			}
			log := string(res.Log)
			m := reportRE.FindStringSubmatch(log)
			if m == nil || m[1] != id || (m[2] != "") != (i == 0) {
				t.Fatalf("%s: bad REPORT line (Init Duration only on the cold start):\n%s", id, log)
			}
			want := []string{"START RequestId: " + id + " Version: $LATEST\n", "handling echo\n", "END RequestId: " + id + "\n", "REPORT RequestId: " + id}
			if i == 0 {
				want = append([]string{"init line\n"}, want...)
			} else if strings.Contains(log, "init line") {
				t.Fatalf("warm log repeats init output:\n%s", log)
			}
			assertOrder(t, log, want)
			polltest.Until(t, 10*time.Second, "the log of "+id, func() bool { return string(e.logs.get(id)) == log })
		}
		if !s.Healthy() {
			t.Fatal("sandbox unhealthy after successful invocations")
		}
	})
}

func TestEnvironment(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("bbb222", goCode(t))
		fn := function("envfn", "provided.al2", "my.handler", "bbb222")
		fn.MemorySize = 256
		fn.Environment = map[string]string{"FOO": "bar", "AWS_REGION": "evil", "PATH": "/custom/bin"}
		s, err := e.w.CreateSandbox(context.Background(), fn)
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "env-1", `{"action":"env"}`)
		var got map[string]string
		if err := json.Unmarshal(res.Payload, &got); err != nil {
			t.Fatalf("%s: %v\n%s", res.Payload, err, res.Log)
		}
		want := map[string]string{
			"AWS_LAMBDA_FUNCTION_NAME": "envfn", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/envfn",
			"_HANDLER": "my.handler", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
			"AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2", "TZ": ":UTC", "LANG": "en_US.UTF-8",
			"FOO": "bar", "PATH": "/custom/bin",
		}
		if e.drv != "host-test" { // the host driver maps /var/task to a host path
			want["LAMBDA_TASK_ROOT"] = "/var/task"
			want["LAMBDA_RUNTIME_DIR"] = "/var/runtime"
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s=%q, want %q", k, got[k], v)
			}
		}
		stream := regexp.MustCompile(`^\d{4}/\d\d/\d\d/\[\$LATEST\]` + s.ID() + `$`)
		if !stream.MatchString(got["AWS_LAMBDA_LOG_STREAM_NAME"]) {
			t.Errorf("log stream %q", got["AWS_LAMBDA_LOG_STREAM_NAME"])
		}
		if !regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$`).MatchString(got["_X_AMZN_TRACE_ID"]) {
			t.Errorf("trace id %q", got["_X_AMZN_TRACE_ID"])
		}
		if got["AWS_LAMBDA_RUNTIME_API"] == "" || !strings.HasPrefix(got["LD_LIBRARY_PATH"], "/var/lang/lib:/lib64:/usr/lib64:") {
			t.Errorf("runtime api %q, LD_LIBRARY_PATH %q", got["AWS_LAMBDA_RUNTIME_API"], got["LD_LIBRARY_PATH"])
		}
	})
}

func TestTimeoutDestroysSandbox(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("ccc333", goCode(t))
		fn := function("slow", "provided", "bootstrap", "ccc333")
		fn.Timeout = 1
		s, err := e.w.CreateSandbox(context.Background(), fn)
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "t-1", `{"action":"sleep"}`)
		wantMsg := "RequestId: t-1 Error: Task timed out after 1.00 seconds"
		if res.FunctionError != invocation.ErrorUnhandled || res.ErrorType != ErrorTypeTimedOut ||
			!strings.Contains(string(res.Payload), wantMsg) {
			t.Fatalf("result %s %s %s", res.FunctionError, res.ErrorType, res.Payload)
		}
		if res.Duration < time.Second {
			t.Fatalf("timed out after %v, before the 1s timeout", res.Duration)
		}
		line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z t-1 Task timed out after 1.00 seconds$`)
		if !line.Match(res.Log) {
			t.Fatalf("log lacks the timeout line:\n%s", res.Log)
		}
		assertOrder(t, string(res.Log), []string{"START RequestId: t-1", "handling sleep", "Task timed out", "END RequestId: t-1", "REPORT RequestId: t-1"})
		if s.Healthy() {
			t.Fatal("sandbox still healthy after a timeout")
		}
		select {
		case <-s.sb.Done():
		default:
			t.Fatal("sandbox processes still running after a timeout")
		}
		if st := e.w.Status(); st.Sandboxes != 0 || st.MemoryUsedMB != 0 {
			t.Fatalf("capacity not released: %+v", st)
		}
		if _, err := s.Invoke(context.Background(), invocation.Request{RequestID: "t-2"}); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("invoke after timeout: %v", err)
		}
	})
}

func TestCrashIsExitError(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("ddd444", goCode(t))
		s, err := e.w.CreateSandbox(context.Background(), function("crash", "provided", "bootstrap", "ddd444"))
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "x-1", `{"action":"exit"}`)
		if res.ErrorType != ErrorTypeExit || !strings.Contains(string(res.Payload), "RequestId: x-1 Error: Runtime exited with error: exit status 2") {
			t.Fatalf("result %s %s\n%s", res.ErrorType, res.Payload, res.Log)
		}
		assertOrder(t, string(res.Log), []string{"START RequestId: x-1", "handling exit", "Runtime exited with error: exit status 2\nRuntime.ExitError\n", "END RequestId: x-1"})
		if s.Healthy() {
			t.Fatal("healthy after crash")
		}
	})
}

func TestInitCrashIsExitError(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("eee555", writeTree(t, map[string]string{"bootstrap": "#!/bin/sh\necho starting\nexit 3\n"}))
		if err := os.Chmod(filepath.Join(e.code.dirs["eee555"], "bootstrap"), 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := e.w.CreateSandbox(context.Background(), function("initcrash", "provided", "bootstrap", "eee555"))
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "i-1", `{}`)
		if res.ErrorType != ErrorTypeExit || !strings.Contains(string(res.Payload), "Runtime exited with error: exit status 3") || !res.ColdStart {
			t.Fatalf("result %s %s cold=%v\n%s", res.ErrorType, res.Payload, res.ColdStart, res.Log)
		}
		assertOrder(t, string(res.Log), []string{"starting\n", "START RequestId: i-1", "END RequestId: i-1", "REPORT RequestId: i-1"})
	})
}

func TestPythonAndNode(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		var py, node string
		for _, n := range e.cat.Names() {
			switch {
			case strings.HasPrefix(n, "python3."):
				py = n
			case strings.HasPrefix(n, "nodejs"):
				node = n
			}
		}
		cases := []struct {
			name, runtime, handler string
			files                  map[string]string
			payload, want, errType string
			logLine                string
		}{
			{"python", py, "app.handler", map[string]string{"app.py": "print('py init')\ndef handler(e, c):\n    print('py says', e['x'])\n    return {'x': e['x'], 'fn': c.function_name}\n"},
				`{"x":1}`, `{"x": 1, "fn": "pyfn"}`, "", "py says 1"},
			{"python-import-error", py, "missing.handler", map[string]string{"app.py": ""},
				`{}`, "", "Runtime.ImportModuleError", "Unable to import module 'missing'"},
			{"python-exception", py, "app.handler", map[string]string{"app.py": "def handler(e, c):\n    raise KeyError('k')\n"},
				`{}`, "", "KeyError", "[ERROR] KeyError"},
			{"node", node, "index.handler", map[string]string{"index.js": "exports.handler = async (e, c) => { console.log('node says', e.x); return { x: e.x, fn: c.functionName }; };\n"},
				`{"x":2}`, `{"x":2,"fn":"nodefn"}`, "", "INFO\tnode says 2"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if tc.runtime == "" {
					t.Skipf("runtime for %s not offered on this host", tc.name)
				}
				digest := fmt.Sprintf("f%02d", i)
				e.code.add(digest, writeTree(t, tc.files))
				fn := function(map[bool]string{true: "pyfn", false: "nodefn"}[strings.HasPrefix(tc.runtime, "python")], tc.runtime, tc.handler, digest)
				s, err := e.w.CreateSandbox(context.Background(), fn)
				if err != nil {
					t.Fatal(err)
				}
				res := e.invoke(t, s, "r-"+tc.name, tc.payload)
				if res.ErrorType != tc.errType || (tc.want != "" && string(res.Payload) != tc.want) {
					t.Fatalf("got %s %s, want %q %s\n%s", res.ErrorType, res.Payload, tc.errType, tc.want, res.Log)
				}
				if !strings.Contains(string(res.Log), tc.logLine) {
					t.Fatalf("log lacks %q:\n%s", tc.logLine, res.Log)
				}
			})
		}
	})
}

func TestConcurrentColdStartsShareCode(t *testing.T) {
	e := newEnv(t, drivers[1].new)
	e.code.add("fff666", goCode(t))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.w.CreateSandbox(context.Background(), function("par", "provided", "bootstrap", "fff666"))
			if err == nil {
				_, err = s.Invoke(context.Background(), invocation.Request{RequestID: fmt.Sprint("p-", i), Payload: []byte(`{"action":"echo"}`)})
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := e.code.unpacks.Load(); n != 1 {
		t.Fatalf("code unpacked %d times, want 1", n)
	}
	st := e.w.Status()
	if len(st.CachedCode) != 1 || st.CachedCode[0] != "fff666" || st.Sandboxes != 4 || st.MemoryUsedMB != 512 {
		t.Fatalf("status %+v", st)
	}
	// Capacity: 4 more fit (MaxSandboxes 8), the 9th does not.
	for range 4 {
		if _, err := e.w.CreateSandbox(context.Background(), function("par", "provided", "bootstrap", "fff666")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.w.CreateSandbox(context.Background(), function("par", "provided", "bootstrap", "fff666")); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("9th sandbox: %v, want ErrNoCapacity", err)
	}
	if _, err := e.w.CreateSandbox(context.Background(), function("x", "cobol42", "h", "fff666")); !errors.Is(err, ErrUnknownRuntime) {
		t.Fatalf("unknown runtime: %v", err)
	}
}

func TestCallerGoneDestroysSandbox(t *testing.T) {
	e := newEnv(t, drivers[1].new)
	e.code.add("aaa999", goCode(t))
	s, err := e.w.CreateSandbox(context.Background(), function("gone", "provided", "bootstrap", "aaa999"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	e.invoke(t, s, "warm", `{"action":"echo"}`) // init done
	if _, err := s.Invoke(ctx, invocation.Request{RequestID: "g-1", Payload: []byte(`{"action":"sleep"}`)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	if s.Healthy() {
		t.Fatal("sandbox healthy after the caller went away mid-invocation")
	}
}

func TestOutOfMemory(t *testing.T) {
	e := newEnv(t, drivers[0].new) // needs the cgroup memory limit of the process driver
	e.code.add("00a000", goCode(t))
	fn := function("hog", "provided", "bootstrap", "00a000")
	fn.Timeout = 30
	s, err := e.w.CreateSandbox(context.Background(), fn)
	if err != nil {
		t.Fatal(err)
	}
	res := e.invoke(t, s, "oom-1", `{"action":"alloc"}`)
	if res.ErrorType != ErrorTypeOutOfMemory ||
		!strings.Contains(string(res.Payload), "RequestId: oom-1 Error: Runtime exited with error: signal: killed") {
		t.Fatalf("result %s %s\n%s", res.ErrorType, res.Payload, res.Log)
	}
	m := reportRE.FindStringSubmatch(string(res.Log))
	if m == nil || !strings.Contains(string(res.Log), "Runtime.OutOfMemory\nEND RequestId: oom-1") {
		t.Fatalf("log:\n%s", res.Log)
	}
	if s.Healthy() {
		t.Fatal("healthy after OOM")
	}
}

func TestInitTimeout(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd, func(c *Config) { c.InitTimeout = 300 * time.Millisecond })
		e.code.add("00b000", writeTree(t, map[string]string{"bootstrap": "#!/bin/sh\necho slow init\nexec sleep 60\n"}))
		if err := os.Chmod(filepath.Join(e.code.dirs["00b000"], "bootstrap"), 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := e.w.CreateSandbox(context.Background(), function("slowinit", "provided", "bootstrap", "00b000"))
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "it-1", `{}`)
		if res.ErrorType != ErrorTypeTimedOut || !strings.Contains(string(res.Payload), "Init timed out after 0.30 seconds") ||
			res.InitDuration < 300*time.Millisecond {
			t.Fatalf("result %s %s init=%v\n%s", res.ErrorType, res.Payload, res.InitDuration, res.Log)
		}
		assertOrder(t, string(res.Log), []string{"slow init\n", "START RequestId: it-1", "END RequestId: it-1", "REPORT RequestId: it-1"})
		if s.Healthy() {
			t.Fatal("healthy after init timeout")
		}
		if st := e.w.Status(); st.Sandboxes != 0 {
			t.Fatalf("sandbox not released: %+v", st)
		}
	})
}

// TestNoLeaks creates, uses and destroys sandboxes, then checks that the
// worker's process is back to its fd and goroutine counts.
func TestNoLeaks(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("00c000", goCode(t))
		// Warm up lazily created things (http transports, the code cache).
		warm, err := e.w.CreateSandbox(context.Background(), function("leak", "provided", "bootstrap", "00c000"))
		if err != nil {
			t.Fatal(err)
		}
		e.invoke(t, warm, "w-0", `{"action":"echo"}`)
		if err := warm.Destroy(context.Background()); err != nil {
			t.Fatal(err)
		}
		fds, gs := openFDs(t), runtime.NumGoroutine()
		for i := range 3 {
			s, err := e.w.CreateSandbox(context.Background(), function("leak", "provided", "bootstrap", "00c000"))
			if err != nil {
				t.Fatal(err)
			}
			e.invoke(t, s, fmt.Sprint("l-", i), `{"action":"echo"}`)
			if i == 2 {
				e.invoke(t, s, "l-exit", `{"action":"exit"}`) // destroyed by the worker
				continue
			}
			if err := s.Destroy(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			nf, ng := openFDs(t), runtime.NumGoroutine()
			if nf <= fds && ng <= gs {
				break
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("leak: fds %d→%d, goroutines %d→%d\n%s", fds, nf, gs, ng, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestPanicThenUnhealthy: aws-lambda-go reports a panic and exits; the
// panic is the invocation's error, and the next invocation is refused with
// ErrUnhealthy (never failed with Runtime.ExitError), whether or not the
// exit was already noticed.
func TestPanicThenUnhealthy(t *testing.T) {
	forEachDriver(t, func(t *testing.T, nd func(*testing.T) sandbox.Driver) {
		e := newEnv(t, nd)
		e.code.add("00d000", goCode(t))
		s, err := e.w.CreateSandbox(context.Background(), function("panicky", "provided", "bootstrap", "00d000"))
		if err != nil {
			t.Fatal(err)
		}
		res := e.invoke(t, s, "p-1", `{"action":"panic","value":"kaboom"}`)
		if res.FunctionError != invocation.ErrorUnhandled || res.ErrorType != "string" || !strings.Contains(string(res.Payload), "kaboom") {
			t.Fatalf("panic result %s %s %s", res.FunctionError, res.ErrorType, res.Payload)
		}
		_, err = s.Invoke(context.Background(), invocation.Request{RequestID: "p-2", Payload: []byte(`{"action":"echo"}`)})
		if !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("after the runtime exited: %v, want ErrUnhealthy", err)
		}
		if st := e.w.Status(); st.Sandboxes != 0 {
			t.Fatalf("dead sandbox still holds capacity: %+v", st)
		}
	})
}
