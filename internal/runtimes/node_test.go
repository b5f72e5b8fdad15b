package runtimes

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

const nodeHandlers = `
exports.asyncHandler = async (event, context) => {
  console.log('hello from', context.awsRequestId);
  const r1 = context.getRemainingTimeInMillis();
  await new Promise((r) => setTimeout(r, 50));
  return {
    event, requestId: context.awsRequestId, functionName: context.functionName,
    functionVersion: context.functionVersion, arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB, logGroup: context.logGroupName, logStream: context.logStreamName,
    r1, r2: context.getRemainingTimeInMillis(),
  };
};
exports.callbackHandler = (event, context, callback) => {
  setTimeout(() => callback(null, { via: 'callback', n: event.n }), 10);
};
exports.succeedHandler = (event, context) => { context.succeed({ via: 'succeed' }); };
exports.throwHandler = async () => { throw new TypeError('wrong type'); };
exports.callbackError = (event, context, cb) => cb(new RangeError('out of range'));
exports.noReturn = (event) => { setTimeout(() => {}, 10); };
exports.nested = { inner: async () => ({ nested: true }) };
exports.notFn = 42;
`

func TestNodeHandlers(t *testing.T) {
	_, rt := catalog(t, "nodejs")
	files := map[string]string{"index.js": nodeHandlers}
	t.Run("async", func(t *testing.T) {
		c := startClient(t, rt, "index.asyncHandler", files)
		for _, id := range []string{"n-1", "n-2"} {
			m := decode(t, c.invoke(t, id, `{"k":"v"}`, 10*time.Second))
			if m["requestId"] != id || m["functionName"] != "myfn" || m["functionVersion"] != "$LATEST" ||
				m["arn"] != testARN || m["memory"] != "256" || m["logGroup"] != "/aws/lambda/myfn" ||
				m["logStream"] != "2026/01/01/[$LATEST]abc" {
				t.Fatalf("context %v", m)
			}
			r1, r2 := m["r1"].(float64), m["r2"].(float64)
			if r1 > 10000 || r1 < 5000 || r2 >= r1 {
				t.Fatalf("remaining r1=%v r2=%v", r1, r2)
			}
		}
		c.waitOutput(t, "\tn-2\tINFO\thello from n-2\n")
		line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tn-1\tINFO\thello from n-1$`)
		if !line.MatchString(c.out.String()) {
			t.Fatalf("console.log line not in Lambda's format:\n%s", c.out)
		}
	})
	for _, tc := range []struct{ handler, want string }{
		{"index.callbackHandler", `{"via":"callback","n":3}`},
		{"index.succeedHandler", `{"via":"succeed"}`},
		{"index.noReturn", `null`},
		{"index.nested.inner", `{"nested":true}`},
	} {
		t.Run(tc.handler, func(t *testing.T) {
			c := startClient(t, rt, tc.handler, files)
			out := c.invoke(t, "c-1", `{"n":3}`, 10*time.Second)
			if out.Err != nil || string(out.Payload) != tc.want {
				t.Fatalf("got %s (err %+v), want %s", out.Payload, out.Err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ handler, typ, msg string }{
		{"index.throwHandler", "TypeError", "wrong type"},
		{"index.callbackError", "RangeError", "out of range"},
	} {
		t.Run(tc.handler, func(t *testing.T) {
			c := startClient(t, rt, tc.handler, files)
			out := c.invoke(t, "x-1", `{}`, 10*time.Second)
			if out.Err == nil || out.Err.ErrorType != tc.typ || out.Err.ErrorMessage != tc.msg {
				t.Fatalf("error %+v payload %s", out.Err, out.Payload)
			}
			var doc struct {
				Trace []string `json:"trace"`
			}
			if err := json.Unmarshal(out.Payload, &doc); err != nil || len(doc.Trace) < 2 || !strings.HasPrefix(doc.Trace[0], tc.typ) {
				t.Fatalf("trace %q (%v)", doc.Trace, err)
			}
			c.waitOutput(t, "\tx-1\tERROR\tInvoke Error \t")
			// The runtime keeps serving after a handled error.
			if out := c.invoke(t, "x-2", `{}`, 10*time.Second); out.Err == nil {
				t.Fatal("second invocation did not run")
			}
		})
	}
}

func TestNodeESMAndSubdir(t *testing.T) {
	_, rt := catalog(t, "nodejs")
	cases := []struct {
		name, handler string
		files         map[string]string
	}{
		{"mjs", "app.handler", map[string]string{"app.mjs": "export const handler = async (e) => ({ esm: true, n: e.n });\n"}},
		{"js-type-module", "src/lib/app.handler", map[string]string{
			"package.json":   `{"type":"module"}`,
			"src/lib/app.js": "export async function handler(e) { return { esm: true, n: e.n }; }\n",
		}},
		{"cjs", "app.handler", map[string]string{"app.cjs": "module.exports.handler = async (e) => ({ esm: true, n: e.n });\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := startClient(t, rt, tc.handler, tc.files)
			m := decode(t, c.invoke(t, "m-1", `{"n":5}`, 10*time.Second))
			if m["esm"] != true || m["n"] != float64(5) {
				t.Fatalf("got %v", m)
			}
		})
	}
}

func TestNodeInitErrors(t *testing.T) {
	_, rt := catalog(t, "nodejs")
	cases := []struct {
		handler string
		files   map[string]string
		typ     string
		msg     string
	}{
		{"missing.handler", map[string]string{"other.js": ""}, "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"},
		{"index.nope", map[string]string{"index.js": nodeHandlers}, "Runtime.HandlerNotFound", "index.nope is undefined or not exported"},
		{"index.notFn", map[string]string{"index.js": nodeHandlers}, "Runtime.HandlerNotFound", "index.notFn is not a function"},
		{"index.handler", map[string]string{"index.js": "exports.handler = (;\n"}, "Runtime.UserCodeSyntaxError", "SyntaxError: "},
		{"index.handler", map[string]string{"index.js": "require('left-pad');\n"}, "Runtime.ImportModuleError", "Error: Cannot find module 'left-pad'"},
	}
	for _, tc := range cases {
		t.Run(tc.typ+"/"+tc.handler, func(t *testing.T) {
			c := startClient(t, rt, tc.handler, tc.files)
			doc := c.initError(t)
			if doc.ErrorType != tc.typ || !strings.HasPrefix(doc.ErrorMessage, tc.msg) {
				t.Fatalf("init error %+v, want %s %q", doc, tc.typ, tc.msg)
			}
			select {
			case <-c.exit:
			case <-time.After(10 * time.Second):
				t.Fatal("client still running after an init error")
			}
		})
	}
}

func TestNodeUncaughtException(t *testing.T) {
	_, rt := catalog(t, "nodejs")
	c := startClient(t, rt, "index.handler", map[string]string{
		"index.js": "exports.handler = (e, ctx, cb) => { setTimeout(() => { throw new Error('late boom'); }, 5); };\n",
	})
	out := c.invoke(t, "u-1", `{}`, 10*time.Second)
	if out.Err == nil || out.Err.ErrorType != "Error" || out.Err.ErrorMessage != "late boom" {
		t.Fatalf("error %+v payload %s", out.Err, out.Payload)
	}
	select {
	case <-c.exit:
	case <-time.After(10 * time.Second):
		t.Fatal("runtime still running after an uncaught exception")
	}
}
