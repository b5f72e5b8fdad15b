package runtimeapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

// FuzzRouter sends random calls to a Server that holds one delivered
// invocation ("live"): nothing may panic, unknown ids are refused, and the
// live invocation is completed only by a POST to its own path.
func FuzzRouter(f *testing.F) {
	f.Add("POST", "/2018-06-01/runtime/invocation/live/response", []byte(`{"a":1}`))
	f.Add("POST", "/2018-06-01/runtime/invocation/stale/error", []byte(`{"errorType":"X"}`))
	f.Add("POST", "/2018-06-01/runtime/init/error", []byte(`not json`))
	f.Add("GET", "/2018-06-01/runtime/invocation//response", []byte{})
	f.Add("PUT", "/2018-06-01/runtime/invocation/live/error", []byte(`null`))
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") {
			return
		}
		srv := New(Config{MaxResponseBytes: 64})
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		result := make(chan error, 1)
		go func() {
			_, err := srv.Dispatch(ctx, invocation.Request{RequestID: "live", Payload: []byte(`{}`)}, time.Now())
			result <- err
		}()
		// Deliver "live" through /next (called from here, not over HTTP).
		if p := srv.next(ctx); p == nil {
			t.Fatal("no invocation delivered")
		}
		req := httptest.NewRequest("GET", "/", strings.NewReader(string(body)))
		req.Method, req.URL.Path = method, path
		rec := httptest.NewRecorder()
		if method == http.MethodGet && path == "/2018-06-01/runtime/invocation/next" {
			return // would long-poll; covered by the other tests
		}
		srv.ServeHTTP(rec, req)
		livePost := method == http.MethodPost &&
			(path == "/2018-06-01/runtime/invocation/live/response" || path == "/2018-06-01/runtime/invocation/live/error")
		switch {
		case livePost:
			if rec.Code != http.StatusAccepted && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%s %s: %d", method, path, rec.Code)
			}
			if err := <-result; err != nil {
				t.Fatalf("live invocation not completed: %v", err)
			}
		case strings.Contains(path, "/invocation/") && rec.Code == http.StatusAccepted:
			t.Fatalf("%s %s accepted for an id the runtime does not hold", method, path)
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH":
		return true
	}
	return false
}
