package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

type goReply struct {
	Hello        string            `json:"hello"`
	RequestID    string            `json:"requestId"`
	FunctionArn  string            `json:"functionArn"`
	Invocations  int               `json:"invocations"`
	RemainingMs  int64             `json:"remainingMs"`
	Env          map[string]string `json:"env"`
	Version      string            `json:"version"`
	Build        string            `json:"build"`
	Instance     string            `json:"instance"`
	StartMs      int64             `json:"startMs"`
	EndMs        int64             `json:"endMs"`
	ClientCustom map[string]string `json:"clientCustom"`
	ClientApp    string            `json:"clientApp"`
}

type errorDoc struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []any    `json:"stackTrace"`
	Trace        []string `json:"trace"`
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createGoFn(t testing.TB, c *lambda.Client, name string, mod func(*lambda.CreateFunctionInput)) *lambda.CreateFunctionOutput {
	t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.RuntimeProvidedal2023,
		Handler:      aws.String("bootstrap"),
		Role:         aws.String("arn:aws:iam::000000000000:role/x"),
		Code:         &types.FunctionCode{ZipFile: goFnZip},
	}
	if mod != nil {
		mod(in)
	}
	out, err := c.CreateFunction(ctxT(t, 60*time.Second), in)
	if err != nil {
		t.Fatalf("CreateFunction %s: %v", name, err)
	}
	return out
}

func invoke(t *testing.T, c *lambda.Client, name string, payload any, tail bool) *lambda.InvokeOutput {
	t.Helper()
	b, _ := json.Marshal(payload)
	in := &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b}
	if tail {
		in.LogType = types.LogTypeTail
	}
	out, err := c.Invoke(ctxT(t, 60*time.Second), in)
	if err != nil {
		t.Fatalf("Invoke %s: %v", name, err)
	}
	return out
}

func decodeTail(t *testing.T, out *lambda.InvokeOutput) string {
	t.Helper()
	if out.LogResult == nil {
		t.Fatal("no LogResult with LogType Tail")
	}
	b, err := base64.StdEncoding.DecodeString(*out.LogResult)
	if err != nil {
		t.Fatalf("LogResult is not base64: %v", err)
	}
	if len(b) > 4096 {
		t.Fatalf("LogResult is %d bytes, want at most 4 KB", len(b))
	}
	return string(b)
}

func asReply(t *testing.T, out *lambda.InvokeOutput) goReply {
	t.Helper()
	if out.FunctionError != nil {
		t.Fatalf("function error %s: %s", *out.FunctionError, out.Payload)
	}
	var r goReply
	if err := json.Unmarshal(out.Payload, &r); err != nil {
		t.Fatalf("payload %q: %v", out.Payload, err)
	}
	return r
}

// TestGoFunctionLifecycle walks a Go function through Lambda's API with
// aws-sdk-go-v2: create, get, list, invoke (cold then warm), update code and
// configuration, errors, timeout, dry run, delete, and a server restart.
func TestGoFunctionLifecycle(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	c := s.lambda()

	created := createGoFn(t, c, "hello", func(in *lambda.CreateFunctionInput) {
		in.Environment = &types.Environment{Variables: map[string]string{"VERSION_MARK": "one"}}
	})
	if got := aws.ToString(created.FunctionArn); got != "arn:aws:lambda:us-east-1:000000000000:function:hello" {
		t.Errorf("FunctionArn = %s", got)
	}
	if created.State != types.StatePending || created.StateReasonCode != types.StateReasonCodeCreating || aws.ToString(created.CodeSha256) == "" {
		t.Errorf("created: State %s (%s) CodeSha256 %q", created.State, created.StateReasonCode, aws.ToString(created.CodeSha256))
	}
	// The SDK's waiter: Active once the code is unpacked on the worker.
	if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctxT(t, 60*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatalf("FunctionActiveV2 waiter: %v", err)
	}

	got, err := c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.Configuration.MemorySize) != 128 || aws.ToInt32(got.Configuration.Timeout) != 3 {
		t.Errorf("defaults: memory %d timeout %d", aws.ToInt32(got.Configuration.MemorySize), aws.ToInt32(got.Configuration.Timeout))
	}

	// Cold, then warm: the same sandbox serves the second invocation, and
	// only the first REPORT has an Init Duration.
	out := invoke(t, c, "hello", map[string]any{"name": "world"}, true)
	r1 := asReply(t, out)
	tail := decodeTail(t, out)
	if r1.Hello != "world" || r1.Invocations != 1 || r1.Version != "one" || r1.Build != "v1" {
		t.Errorf("first reply = %+v", r1)
	}
	if r1.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:hello" {
		t.Errorf("invoked function ARN = %q", r1.FunctionArn)
	}
	if r1.RemainingMs <= 0 || r1.RemainingMs > 3000 {
		t.Errorf("remaining time %d ms, want within the 3 s timeout", r1.RemainingMs)
	}
	if aws.ToString(out.ExecutedVersion) != "$LATEST" {
		t.Errorf("ExecutedVersion = %q", aws.ToString(out.ExecutedVersion))
	}
	for _, want := range []string{"START RequestId: " + r1.RequestID, "handled  for world", "END RequestId: " + r1.RequestID, "REPORT RequestId: " + r1.RequestID, "Init Duration:", "Max Memory Used:", "Billed Duration:"} {
		if !strings.Contains(tail, want) {
			t.Errorf("log tail lacks %q:\n%s", want, tail)
		}
	}
	if strings.Index(tail, "handled") > strings.Index(tail, "END RequestId") {
		t.Errorf("function output after END:\n%s", tail)
	}
	out = invoke(t, c, "hello", map[string]any{"name": "again"}, true)
	r2 := asReply(t, out)
	if r2.Instance != r1.Instance || r2.Invocations != 2 {
		t.Errorf("warm invoke ran in another sandbox: %+v then %+v", r1, r2)
	}
	if tail := decodeTail(t, out); strings.Contains(tail, "Init Duration") {
		t.Errorf("warm invocation reports an Init Duration:\n%s", tail)
	}

	// Concurrent invocations get separate sandboxes.
	var wg sync.WaitGroup
	instances := make(chan string, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 500})
			o, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: b})
			if err != nil {
				t.Error(err)
				return
			}
			var r goReply
			json.Unmarshal(o.Payload, &r)
			instances <- r.Instance
		}()
	}
	wg.Wait()
	close(instances)
	seen := map[string]bool{}
	for id := range instances {
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Errorf("3 concurrent invocations ran in %d sandboxes, want 3", len(seen))
	}

	// A function error.
	out = invoke(t, c, "hello", map[string]any{"action": "error", "name": "x"}, false)
	var ed errorDoc
	json.Unmarshal(out.Payload, &ed)
	if aws.ToString(out.FunctionError) != "Unhandled" || ed.ErrorMessage != "boom: x" || ed.ErrorType != "errorString" {
		t.Errorf("error invoke: FunctionError %q payload %s", aws.ToString(out.FunctionError), out.Payload)
	}

	// Update code: the new code runs.
	upd, err := c.UpdateFunctionCode(ctxT(t, 60*time.Second), &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: goFnZip2})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(upd.CodeSha256) == aws.ToString(created.CodeSha256) || aws.ToString(upd.RevisionId) == aws.ToString(created.RevisionId) {
		t.Errorf("UpdateFunctionCode kept CodeSha256/RevisionId")
	}
	if upd.LastUpdateStatus != types.LastUpdateStatusInProgress {
		t.Errorf("UpdateFunctionCode answered LastUpdateStatus %s, want InProgress", upd.LastUpdateStatus)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(c).Wait(ctxT(t, 60*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, time.Minute); err != nil {
		t.Fatalf("FunctionUpdatedV2 waiter: %v", err)
	}
	if r := asReply(t, invoke(t, c, "hello", map[string]any{}, false)); r.Build != "v2" || r.Invocations != 1 {
		t.Errorf("after code update: %+v, want build v2 in a new sandbox", r)
	}

	// Update configuration: new env, memory and timeout take effect.
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("hello"),
		MemorySize:   aws.Int32(256),
		Timeout:      aws.Int32(1),
		Environment:  &types.Environment{Variables: map[string]string{"VERSION_MARK": "two"}},
	}); err != nil {
		t.Fatal(err)
	}
	r := asReply(t, invoke(t, c, "hello", map[string]any{"action": "env"}, false))
	if r.Version != "two" || r.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] != "256" || r.RemainingMs > 1000 {
		t.Errorf("after configuration update: version %q memory %q remaining %d", r.Version, r.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], r.RemainingMs)
	}
	for k, want := range map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":    "hello",
		"AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
		"AWS_REGION":                  "us-east-1",
		"LAMBDA_TASK_ROOT":            "/var/task",
		"_HANDLER":                    "bootstrap",
	} {
		if r.Env[k] != want {
			t.Errorf("env %s = %q, want %q", k, r.Env[k], want)
		}
	}
	if r.Env["AWS_LAMBDA_RUNTIME_API"] == "" {
		t.Error("AWS_LAMBDA_RUNTIME_API not set")
	}

	// Timeout: the 1 s limit stops a 3 s sleep; the next invocation works.
	out = invoke(t, c, "hello", map[string]any{"action": "sleep", "ms": 3000}, true)
	json.Unmarshal(out.Payload, &ed)
	if aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(ed.ErrorMessage, "Task timed out after 1.00 seconds") {
		t.Errorf("timeout: FunctionError %q payload %s", aws.ToString(out.FunctionError), out.Payload)
	}
	if tail := decodeTail(t, out); !strings.Contains(tail, "Task timed out after 1.00 seconds") {
		t.Errorf("timeout not in log tail:\n%s", tail)
	}
	asReply(t, invoke(t, c, "hello", map[string]any{"name": "after-timeout"}, false))

	// DryRun checks without running.
	dry, err := c.Invoke(ctxT(t, 10*time.Second), &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || dry.StatusCode != 204 {
		t.Errorf("DryRun: status %v err %v", dry, err)
	}

	// Paged listing.
	for i := 0; i < 4; i++ {
		createGoFn(t, c, fmt.Sprintf("page-%d", i), nil)
	}
	var names []string
	pages := 0
	p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Functions) > 2 {
			t.Errorf("page of %d with MaxItems 2", len(page.Functions))
		}
		pages++
		for _, f := range page.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if len(names) != 5 || pages != 3 {
		t.Errorf("listed %v in %d pages, want 5 functions in 3 pages", names, pages)
	}

	// Restart: everything is still there and invocable.
	s.stop()
	s = startServer(t, data)
	c = s.lambda()
	if r := asReply(t, invoke(t, c, "hello", map[string]any{"name": "restarted", "action": "env"}, false)); r.Build != "v2" || r.Version != "two" {
		t.Errorf("after restart: %+v", r)
	}

	// Delete, then 404.
	if _, err := c.DeleteFunction(ctxT(t, 30*time.Second), &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("GetFunction after delete: %v, want ResourceNotFoundException", err)
	}
	_, err = c.Invoke(ctxT(t, 10*time.Second), &lambda.InvokeInput{FunctionName: aws.String("hello")})
	if !errors.As(err, &nf) {
		t.Errorf("Invoke after delete: %v, want ResourceNotFoundException", err)
	}
}

// TestSandboxInit: without --sandbox-init the server starts the
// flint-sandbox-init next to its binary (where `go build -o bin/
// ./cmd/flint ./cmd/flint-sandbox-init` puts it) as each sandbox's init,
// re-executes itself when there is none, and takes --sandbox-init when
// given; GET /flint/v1/stats says which, and sandboxes run with each.
func TestSandboxInit(t *testing.T) {
	// The same binary alone in its directory.
	alone := filepath.Join(t.TempDir(), "flint")
	if b, err := os.ReadFile(flintBin); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bin string
		args      []string
		want      string
	}{
		{"next to the binary", flintBin, nil, initBin + " (next to this binary, same init source)"},
		{"none next to it", alone, nil, "this binary, re-executed (no flint-sandbox-init next to it)"},
		{"flag", alone, []string{"--sandbox-init", initBin}, initBin + " (--sandbox-init)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := startServerBin(t, tc.bin, t.TempDir(), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				SandboxInit string `json:"sandboxInit"`
			}
			resp, err := http.Get(s.url() + "/flint/v1/stats")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st.SandboxInit != tc.want {
				t.Errorf("stats sandboxInit = %q, want %q", st.SandboxInit, tc.want)
			}
			c := s.lambda()
			createGoFn(t, c, "init-fn", nil)
			out := invoke(t, c, "init-fn", map[string]any{"name": "init"}, true)
			if r := asReply(t, out); r.Hello != "init" {
				t.Errorf("reply %+v", r)
			}
			if tail := decodeTail(t, out); !strings.Contains(tail, "Init Duration") {
				t.Errorf("cold invocation without Init Duration:\n%s", tail)
			}
		})
	}
}
