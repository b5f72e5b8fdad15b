package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// offeredRuntime returns the runtime of the given family (python3.*,
// nodejs*) that the server offers, read from its own error message for an
// unknown runtime, which must list what the host offers.
func offeredRuntime(t *testing.T, c *lambda.Client, prefix string) string {
	t.Helper()
	_, err := c.CreateFunction(ctxT(t, 10*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String("probe-runtimes"),
		Runtime:      types.Runtime("cobol85"),
		Handler:      aws.String("x"),
		Role:         aws.String("arn:aws:iam::000000000000:role/x"),
		Code:         &types.FunctionCode{ZipFile: goFnZip},
	})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("unknown runtime: %v, want InvalidParameterValueException", err)
	}
	for _, f := range strings.FieldsFunc(aws.ToString(ipv.Message), func(r rune) bool { return strings.ContainsRune(" ,[]:;()'\"", r) }) {
		if strings.HasPrefix(f, prefix) {
			return strings.TrimSuffix(f, ".")
		}
	}
	t.Fatalf("no %s* runtime in %q", prefix, aws.ToString(ipv.Message))
	return ""
}

func TestPythonAndNodeRuntimes(t *testing.T) {
	s := startServer(t, t.TempDir())
	checkPythonAndNode(t, s.lambda())
}

// checkPythonAndNode runs the Python and Node test functions on the
// server c talks to (TestMicroVMDriver runs them in microVMs): cold and
// warm invocations, the context, the log tail, a handler error. Each
// function is deleted after its case (its idle sandbox with it).
func checkPythonAndNode(t *testing.T, c *lambda.Client) {
	python := offeredRuntime(t, c, "python3.")
	node := offeredRuntime(t, c, "nodejs")

	cases := []struct {
		name, runtime, handler, dir, errType string
	}{
		{"py", python, "handler.handler", "python", "ValueError"},
		{"node-async", node, "index.handler", "node", "TypeError"},
		{"node-callback", node, "index.callback", "node", "Error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
				FunctionName: aws.String(tc.name),
				Runtime:      types.Runtime(tc.runtime),
				Handler:      aws.String(tc.handler),
				Role:         aws.String("arn:aws:iam::000000000000:role/x"),
				MemorySize:   aws.Int32(256),
				Code:         &types.FunctionCode{ZipFile: zipTestdata(t, tc.dir)},
			}); err != nil {
				t.Fatal(err)
			}
			defer c.DeleteFunction(ctxT(t, 30*time.Second), &lambda.DeleteFunctionInput{FunctionName: aws.String(tc.name)})
			out := invoke(t, c, tc.name, map[string]any{"name": "flint"}, true)
			if out.FunctionError != nil {
				t.Fatalf("%s: %s", *out.FunctionError, out.Payload)
			}
			var r map[string]any
			if err := json.Unmarshal(out.Payload, &r); err != nil {
				t.Fatalf("payload %q: %v", out.Payload, err)
			}
			if r["hello"] != "flint" || r["invocations"] != float64(1) {
				t.Errorf("reply %v", r)
			}
			if tc.name != "node-callback" {
				if rid, _ := r["requestId"].(string); len(rid) != 36 {
					t.Errorf("request id %q", rid)
				}
				if rem, _ := r["remainingMs"].(float64); rem <= 0 || rem > 3000 {
					t.Errorf("remaining %v ms", r["remainingMs"])
				}
				if r["functionArn"] != "arn:aws:lambda:us-east-1:000000000000:function:"+tc.name {
					t.Errorf("functionArn %v", r["functionArn"])
				}
				tail := decodeTail(t, out)
				if !strings.Contains(tail, "handled") || !strings.Contains(tail, "REPORT RequestId") {
					t.Errorf("log tail:\n%s", tail)
				}
			}
			if r := invoke(t, c, tc.name, map[string]any{"name": "again"}, false); !strings.Contains(string(r.Payload), `"invocations": 2`) && !strings.Contains(string(r.Payload), `"invocations":2`) {
				t.Errorf("warm invocation: %s", r.Payload)
			}
			out = invoke(t, c, tc.name, map[string]any{"name": "bad", "action": "error"}, false)
			var ed errorDoc
			json.Unmarshal(out.Payload, &ed)
			if aws.ToString(out.FunctionError) != "Unhandled" || ed.ErrorType != tc.errType || ed.ErrorMessage != "boom: bad" {
				t.Errorf("error: %q %s", aws.ToString(out.FunctionError), out.Payload)
			}
		})
	}
}
