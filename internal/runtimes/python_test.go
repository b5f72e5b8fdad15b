package runtimes

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

const pyHandler = `
import json, time, logging
print("init line")

def handler(event, context):
    print("hello from", context.aws_request_id)
    if event.get("action") == "raise":
        raise ValueError("bad value " + str(event.get("n")))
    if event.get("action") == "unserialisable":
        return {"s": set()}
    r1 = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    r2 = context.get_remaining_time_in_millis()
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "functionVersion": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "logGroup": context.log_group_name,
        "logStream": context.log_stream_name,
        "r1": r1, "r2": r2,
    }
`

func TestPythonSuccessAndContext(t *testing.T) {
	_, rt := catalog(t, "python3.")
	c := startClient(t, rt, "app.handler", map[string]string{"app.py": pyHandler})
	for i, id := range []string{"req-1", "req-2"} {
		m := decode(t, c.invoke(t, id, `{"k":"v"}`, 10*time.Second))
		if m["requestId"] != id || m["functionName"] != "myfn" || m["functionVersion"] != "$LATEST" ||
			m["arn"] != testARN || m["memory"] != float64(256) || m["logGroup"] != "/aws/lambda/myfn" ||
			m["logStream"] != "2026/01/01/[$LATEST]abc" {
			t.Fatalf("invocation %d: context %v", i, m)
		}
		if ev, _ := m["event"].(map[string]any); ev["k"] != "v" {
			t.Fatalf("event %v", m["event"])
		}
		r1, r2 := m["r1"].(float64), m["r2"].(float64)
		if r1 > 10000 || r1 < 5000 || r2 >= r1 {
			t.Fatalf("remaining time r1=%v r2=%v (deadline 10s away, 50ms apart)", r1, r2)
		}
	}
	c.waitOutput(t, "hello from req-2")
	if !strings.Contains(c.out.String(), "init line") {
		t.Fatalf("init output missing:\n%s", c.out)
	}
}

func TestPythonException(t *testing.T) {
	_, rt := catalog(t, "python3.")
	c := startClient(t, rt, "app.handler", map[string]string{"app.py": pyHandler})
	out := c.invoke(t, "e-1", `{"action":"raise","n":7}`, 10*time.Second)
	if out.Err == nil || out.Err.ErrorType != "ValueError" || out.Err.ErrorMessage != "bad value 7" {
		t.Fatalf("error %+v payload %s", out.Err, out.Payload)
	}
	var doc struct {
		StackTrace []string `json:"stackTrace"`
		RequestID  string   `json:"requestId"`
	}
	if err := json.Unmarshal(out.Payload, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.StackTrace) == 0 || !strings.Contains(doc.StackTrace[len(doc.StackTrace)-1], "app.py") ||
		strings.Contains(strings.Join(doc.StackTrace, ""), "bootstrap.py") || doc.RequestID != "e-1" {
		t.Fatalf("stack trace %q requestId %q", doc.StackTrace, doc.RequestID)
	}
	c.waitOutput(t, "[ERROR] ValueError: bad value 7")
	// Not serialisable → Runtime.MarshalError; the runtime carries on.
	if out := c.invoke(t, "e-2", `{"action":"unserialisable"}`, 10*time.Second); out.Err == nil || out.Err.ErrorType != "Runtime.MarshalError" {
		t.Fatalf("marshal error %+v", out.Err)
	}
}

func TestPythonSubdirModule(t *testing.T) {
	_, rt := catalog(t, "python3.")
	c := startClient(t, rt, "pkg/sub/mod.handler", map[string]string{
		"pkg/__init__.py":     "",
		"pkg/sub/__init__.py": "",
		"pkg/sub/mod.py":      "def handler(e, c):\n    return {'ok': True}\n",
	})
	if m := decode(t, c.invoke(t, "s-1", `{}`, 5*time.Second)); m["ok"] != true {
		t.Fatalf("got %v", m)
	}
}

func TestPythonInitErrors(t *testing.T) {
	_, rt := catalog(t, "python3.")
	cases := []struct {
		handler, file, body, typ, msg string
	}{
		{"missing.handler", "other.py", "", "Runtime.ImportModuleError", "Unable to import module 'missing': No module named 'missing'"},
		{"app.nope", "app.py", "def handler(e, c): pass\n", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"},
		{"app.handler", "app.py", "def handler(e, c)\n", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"},
		{"nodot", "app.py", "", "Runtime.MalformedHandlerName", "Bad handler 'nodot'"},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			c := startClient(t, rt, tc.handler, map[string]string{tc.file: tc.body})
			doc := c.initError(t)
			if doc.ErrorType != tc.typ || !strings.HasPrefix(doc.ErrorMessage, tc.msg) {
				t.Fatalf("init error %+v, want %s %q", doc, tc.typ, tc.msg)
			}
			select {
			case <-c.exit:
			case <-time.After(10 * time.Second):
				t.Fatal("client still running after an init error")
			}
			if !strings.Contains(c.out.String(), "[ERROR] "+tc.typ) {
				t.Fatalf("init error not logged:\n%s", c.out)
			}
		})
	}
}

func TestPythonClientContextAndIdentity(t *testing.T) {
	_, rt := catalog(t, "python3.")
	c := startClient(t, rt, "app.handler", map[string]string{"app.py": `
def handler(event, context):
    cc = context.client_context
    return {"custom": cc.custom if cc else None, "identity": context.identity}
`})
	c.ready(t)
	out, err := c.srv.Dispatch(t.Context(), invocation.Request{
		RequestID: "cc-1", Payload: []byte(`{}`), ClientContext: `{"custom":{"a":"b"},"client":{}}`,
	}, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m := decode(t, out); m["identity"] != nil || m["custom"].(map[string]any)["a"] != "b" {
		t.Fatalf("got %v", m)
	}
}
