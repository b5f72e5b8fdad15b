package records

import (
	"encoding/json"
	"testing"
	"time"
)

func checkAppendJSON(t *testing.T, r Record) {
	t.Helper()
	if !r.encodable() {
		return
	}
	want, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.appendJSON(nil); string(got) != string(want) {
		t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
	}
}

// TestAppendJSON holds the record encoder to json.Marshal.
func TestAppendJSON(t *testing.T) {
	start := time.Date(2026, 11, 29, 19, 0, 0, 123456789, time.UTC)
	for _, r := range []Record{
		{},
		{RequestID: "a1b2", Version: "$LATEST", Start: start, DurationMs: 0.481, BilledDurationMs: 1,
			MemorySizeMB: 128, MemoryUsedMB: 12, Outcome: "success", Sandbox: "sb-1", Host: "h1"},
		{RequestID: "x", Start: start.Truncate(time.Second), DurationMs: 3000, ColdStart: true, InitDurationMs: 12.5,
			Steps:   &Steps{Placement: 0.14, CodeFetch: 1e-7, SandboxCreate: 13.4, RuntimeInit: 2.36},
			Outcome: "timeout", ErrorType: "Sandbox.Timedout"},
		{RequestID: "q\"<>&\\\n\u2028é\xff", Outcome: "function_error", ErrorType: "</script>", DurationMs: 1e21},
		{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), DurationMs: -0.5},
	} {
		checkAppendJSON(t, r)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("id", "$LATEST", "success", "", int64(1700000000123456789), 0.5, 1.25, true)
	f.Fuzz(func(t *testing.T, id, version, outcome, errorType string, startNs int64, dur, init float64, cold bool) {
		r := Record{RequestID: id, Version: version, Outcome: outcome, ErrorType: errorType,
			Start: time.Unix(0, startNs).UTC(), DurationMs: dur, InitDurationMs: init, ColdStart: cold}
		if cold {
			r.Steps = &Steps{Placement: dur, CodeFetch: init, SandboxCreate: dur * 3, RuntimeInit: init / 7}
		}
		checkAppendJSON(t, r)
	})
}
