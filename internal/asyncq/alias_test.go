package asyncq

import (
	"context"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

// An event queued through an alias keeps the alias: it runs the alias's
// version, sees the alias ARN, and the alias's event invoke config (here:
// no retries) applies instead of $LATEST's defaults.
func TestEventThroughAliasUsesAliasConfig(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("aliased", "")
	e.inv.set("aliased", &behavior{failTimes: 100})
	e.putConfig("aliased", "live", &EventInvokeConfig{MaximumRetryAttempts: intp(0)})
	arn := fn.ARN() + ":live"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Enqueue(ctx, fn, invocation.Request{RequestID: "al-1", Payload: []byte(`{}`), Qualifier: "live", InvokedFunctionARN: arn}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus("al-1", StateFailed)
	calls := e.inv.callsOf("aliased")
	if len(calls) != 1 {
		t.Fatalf("%d attempts, want 1 (the alias's MaximumRetryAttempts 0)", len(calls))
	}
	if calls[0].version != "1" || calls[0].invokedARN != arn {
		t.Fatalf("ran version %q as %q, want version 1 as %s", calls[0].version, calls[0].invokedARN, arn)
	}
}

func TestEventClientContext(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		`{"custom":{"k":"v"}}`:         `{"custom":{"k":"v"}}`,
		"eyJjdXN0b20iOnsiayI6InYifX0=": `{"custom":{"k":"v"}}`, // queued by an older Flint
		"not json, not base64":         "not json, not base64",
	} {
		if got := (&event{ClientContext: in}).clientContext(); got != want {
			t.Errorf("clientContext(%q) = %q, want %q", in, got, want)
		}
	}
}
