package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// clientContextB64 is a mobile SDK style client context, base64 as
// callers send it.
var clientContextB64 = base64.StdEncoding.EncodeToString([]byte(
	`{"client":{"installation_id":"inst-1","app_title":"flint-app","app_version_name":"1.0","app_version_code":"1","app_package_name":"dev.flint"},` +
		`"custom":{"k":"v"},"env":{"platform":"linux"}}`))

// TestClientContextAndInvokedARN: every runtime gets the client context
// decoded and sees the ARN it was invoked by (an alias's when invoked
// through one).
func TestClientContextAndInvokedARN(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	python := offeredRuntime(t, c, "python3.")
	node := offeredRuntime(t, c, "nodejs")
	cases := []struct {
		name string
		mod  func(*lambda.CreateFunctionInput)
	}{
		{"cc-go", nil},
		{"cc-py", func(in *lambda.CreateFunctionInput) {
			in.Runtime, in.Handler, in.Code.ZipFile = types.Runtime(python), aws.String("handler.handler"), zipTestdata(t, "python")
		}},
		{"cc-node", func(in *lambda.CreateFunctionInput) {
			in.Runtime, in.Handler, in.Code.ZipFile = types.Runtime(node), aws.String("index.handler"), zipTestdata(t, "node")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			createGoFn(t, c, tc.name, tc.mod)
			if _, err := c.PublishVersion(ctxT(t, 30*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String(tc.name)}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateAlias(ctxT(t, 30*time.Second), &lambda.CreateAliasInput{
				FunctionName: aws.String(tc.name), Name: aws.String("beta"), FunctionVersion: aws.String("1"),
			}); err != nil {
				t.Fatal(err)
			}
			for _, q := range []struct{ fn, qual, arn string }{
				{tc.name + ":beta", "", functionARNOf(tc.name) + ":beta"},
				{tc.name, "beta", functionARNOf(tc.name) + ":beta"},
				{tc.name, "1", functionARNOf(tc.name) + ":1"},
				{tc.name, "", functionARNOf(tc.name)},
			} {
				in := &lambda.InvokeInput{FunctionName: aws.String(q.fn), Payload: []byte(`{"name":"cc"}`), ClientContext: aws.String(clientContextB64)}
				if q.qual != "" {
					in.Qualifier = aws.String(q.qual)
				}
				out, err := c.Invoke(ctxT(t, 60*time.Second), in)
				if err != nil {
					t.Fatalf("invoke %s (qualifier %q): %v", q.fn, q.qual, err)
				}
				r := asReply(t, out)
				if r.FunctionArn != q.arn {
					t.Errorf("invoked as %s (qualifier %q): function sees ARN %s, want %s", q.fn, q.qual, r.FunctionArn, q.arn)
				}
				if r.ClientCustom["k"] != "v" {
					t.Errorf("client context custom = %v, want k=v (payload %s)", r.ClientCustom, out.Payload)
				}
				if tc.name == "cc-go" && r.ClientApp != "flint-app" {
					t.Errorf("client context app title %q", r.ClientApp)
				}
			}
		})
	}

	// Event invocations through an alias: the alias's event invoke config
	// applies, and the function sees the alias ARN.
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("cc-go"), Qualifier: aws.String("beta"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(queueARN("beta-ok"))}},
	})
	id := invokeEvent(t, c, "cc-go:beta", []byte(`{"name":"async"}`))
	msgs := s.waitQueue(t, "beta-ok", 1, 60*time.Second)
	rec := decodeRecord(t, msgs[0].Body)
	if rec.RequestContext.RequestID != id || rec.ResponseContext == nil || rec.ResponseContext.ExecutedVersion != "1" {
		t.Fatalf("record %+v", rec)
	}
	var r goReply
	if err := json.Unmarshal(rec.ResponsePayload, &r); err != nil || r.FunctionArn != functionARNOf("cc-go")+":beta" {
		t.Fatalf("async reply %s: %v", rec.ResponsePayload, err)
	}
}

// TestInvokeAfterCrash: the invocation whose runtime exits gets
// Runtime.ExitError (or, when aws-lambda-go reports a panic before
// exiting, the panic's error); the next invocation, sent at once, runs on
// a fresh sandbox and succeeds.
func TestInvokeAfterCrash(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createGoFn(t, c, "crashy", nil)
	for i := 0; i < 3; i++ {
		for _, action := range []string{"exit", "panic"} {
			out := invoke(t, c, "crashy", map[string]any{"action": action, "name": "x"}, false)
			var ed errorDoc
			_ = json.Unmarshal(out.Payload, &ed)
			if aws.ToString(out.FunctionError) != "Unhandled" {
				t.Fatalf("%s: FunctionError %q, payload %s", action, aws.ToString(out.FunctionError), out.Payload)
			}
			if action == "exit" && ed.ErrorType != "Runtime.ExitError" {
				t.Fatalf("exit: error %s, want Runtime.ExitError", out.Payload)
			}
			if action == "panic" && !strings.Contains(ed.ErrorMessage, "panic: x") {
				t.Fatalf("panic: error %s", out.Payload)
			}
			// At once: the crashed runtime may not even have exited yet.
			r := asReply(t, invoke(t, c, "crashy", map[string]any{"name": "after-" + action}, false))
			if r.Hello != "after-"+action || r.Invocations != 1 {
				t.Fatalf("after %s: %+v, want a fresh sandbox", action, r)
			}
		}
	}
}

// TestUnknownRoutesAnswerJSON: any path that is not an operation answers
// Lambda's JSON error (with X-Amzn-ErrorType), so every SDK gets a typed
// error instead of a deserialization failure.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, p := range []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/2015-03-31/nosuch"},
		{"POST", "/2099-01-01/functions/f/whatever"},
		{"GET", "/flint/v1/nosuch"},
		{"DELETE", "/2015-03-31/functions"},
	} {
		req, _ := http.NewRequest(p.method, s.url()+p.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.Header.Get("X-Amzn-ErrorType") == "" || body["Type"] != "User" || resp.StatusCode < 400 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s %v (%v)", p.method, p.path, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body, err)
		}
	}
}
