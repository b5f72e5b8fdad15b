package records

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/logstore"
)

// memSource serves records kept in memory, as the log store would (oldest
// first, those stored before Since skipped).
type memSource struct{ entries []logstore.Entry }

func (m *memSource) AppendRecord(ctx context.Context, account, function, requestID string, data []byte) error {
	m.entries = append(m.entries, logstore.Entry{Time: time.Now(), RequestID: requestID, Data: append([]byte(nil), data...)})
	return nil
}

func (m *memSource) ReadRecords(ctx context.Context, account, function string, opts logstore.ReadOptions, fn func(logstore.Entry) error) error {
	for _, e := range m.entries {
		if e.Time.Before(opts.Since) {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func TestRecordOfAColdStart(t *testing.T) {
	res := invocation.Result{RequestID: "r1", ExecutedVersion: "3", Duration: 1500 * time.Microsecond, ColdStart: true,
		InitDuration: 80 * time.Millisecond, MemoryUsedBytes: 30<<20 + 1, Host: "h1", SandboxID: "s1",
		Cold: &invocation.ColdSteps{Placement: 10 * time.Microsecond, CodeFetch: 2 * time.Millisecond,
			SandboxCreate: 30 * time.Millisecond, RuntimeInit: 50 * time.Millisecond}}
	r := New(&res, time.Unix(100, 0), 128, "success")
	b, _ := json.Marshal(r)
	var got map[string]any
	json.Unmarshal(b, &got)
	want := map[string]any{"requestId": "r1", "version": "3", "durationMs": 1.5, "billedDurationMs": 2.0,
		"memorySizeMB": 128.0, "memoryUsedMB": 31.0, "coldStart": true, "initDurationMs": 80.0, "host": "h1",
		"sandbox": "s1", "outcome": "success", "start": "1970-01-01T00:01:40Z",
		"steps": map[string]any{"placement": 0.01, "codeFetch": 2.0, "sandboxCreate": 30.0, "runtimeInit": 50.0}}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("record\n%s\nwant\n%s", gb, wb)
	}
	warm := New(&invocation.Result{RequestID: "r2", Duration: 0}, time.Unix(100, 0), 128, "success")
	if warm.Steps != nil || warm.BilledDurationMs != 1 {
		t.Errorf("warm record %+v", warm)
	}
}

func TestHandler(t *testing.T) {
	src := &memSource{}
	w := NewWriter(src, nil)
	now := time.Now()
	for i := 0; i < 5; i++ {
		r := New(&invocation.Result{RequestID: "r" + strconv.Itoa(i), Duration: time.Millisecond}, now.Add(time.Duration(i-3)*time.Hour), 128, "success")
		w.Write("000000000000", "f", &r)
	}
	src.entries = append(src.entries, logstore.Entry{Time: now, Data: []byte("not json")})
	h := http.NewServeMux()
	h.Handle("GET /flint/v1/functions/{name}/invocations", Handler(src, func(*http.Request) string { return "000000000000" }, nil))
	get := func(q string) (int, []Record) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/flint/v1/functions/f/invocations"+q, nil))
		var out struct{ Invocations []Record }
		json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out.Invocations
	}
	// Default: the last hour (r3 started now, r4 an hour ahead).
	if code, recs := get(""); code != 200 || len(recs) != 2 || recs[0].RequestID != "r3" {
		t.Errorf("default: %d %+v", code, recs)
	}
	if code, recs := get("?since=" + strconv.FormatInt(now.Add(-10*time.Hour).UnixMilli(), 10) + "&limit=2"); code != 200 || len(recs) != 2 || recs[1].RequestID != "r4" {
		t.Errorf("limit 2: %d %+v", code, recs)
	}
	if code, recs := get("?since=" + now.Add(-150*time.Minute).UTC().Format(time.RFC3339)); code != 200 || len(recs) != 4 {
		t.Errorf("RFC 3339 since: %d %+v", code, recs)
	}
	for _, q := range []string{"?since=yesterday", "?limit=0", "?limit=100001", "?limit=x"} {
		if code, _ := get(q); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/flint/v1/functions/bad.name/invocations", nil))
	if rec.Code != 400 {
		t.Errorf("bad name: %d", rec.Code)
	}
}

// FuzzInvocationsQuery: any query string gets a 200 with a JSON list or a
// 400 in Lambda's error shape, never a panic or a 5xx.
func FuzzInvocationsQuery(f *testing.F) {
	f.Add("since=2026-01-01T00:00:00Z&limit=5")
	f.Add("since=1700000000000")
	f.Add("limit=-1&since=%zz")
	src := &memSource{}
	w := NewWriter(src, nil)
	r := New(&invocation.Result{RequestID: "r", Duration: time.Millisecond}, time.Now(), 128, "success")
	w.Write("000000000000", "f", &r)
	mux := http.NewServeMux()
	mux.Handle("GET /flint/v1/functions/{name}/invocations", Handler(src, func(*http.Request) string { return "000000000000" }, nil))
	f.Fuzz(func(t *testing.T, query string) {
		req, err := http.NewRequest("GET", "/flint/v1/functions/f/invocations", nil)
		if err != nil {
			t.Skip()
		}
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			var out struct{ Invocations []Record }
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Invocations == nil {
				t.Fatalf("200 without a list: %q", rec.Body.String())
			}
		case 400:
			if rec.Header().Get("X-Amzn-ErrorType") == "" {
				t.Fatalf("400 without an error type: %q", rec.Body.String())
			}
		default:
			t.Fatalf("query %q: status %d", query, rec.Code)
		}
	})
}
