package funcurl

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// oneURL serves one configuration.
type oneURL struct{ c *metadata.URLConfig }

func (o oneURL) LookupURL(_ context.Context, id string) (*metadata.URLConfig, error) {
	if id != o.c.ID {
		return nil, metadata.ErrURLNotFound
	}
	return o.c, nil
}

// scripted answers by the request's path (in the 2.0 event).
type scripted struct{}

func (scripted) InvokeURL(_ context.Context, c *metadata.URLConfig, req invocation.Request) (*metadata.Function, invocation.Result, error) {
	fn := &metadata.Function{Name: c.FunctionName, Version: metadata.LatestVersion}
	p := string(req.Payload)
	switch {
	case strings.Contains(p, `"rawPath":"/throttle"`):
		return nil, invocation.Result{}, &lambdaerr.Error{Type: lambdaerr.TooManyRequests, Message: "Rate Exceeded.", RetryAfterSeconds: 1}
	case strings.Contains(p, `"rawPath":"/fail"`):
		return fn, invocation.Result{FunctionError: invocation.ErrorUnhandled, Payload: []byte(`{"errorType":"Error"}`)}, nil
	case strings.Contains(p, `"rawPath":"/broken"`):
		return nil, invocation.Result{}, errors.New("sandbox vanished")
	case strings.Contains(p, `"rawPath":"/malformed"`):
		return fn, invocation.Result{Payload: []byte(`{"statusCode":"x"}`)}, nil
	}
	return fn, invocation.Result{Payload: []byte(`"ok"`)}, nil
}

func TestServeHTTPErrors(t *testing.T) {
	c := &metadata.URLConfig{ID: "abc", Account: "111111111111", FunctionName: "f", AuthType: AuthNone}
	h, err := New(Config{Lookup: oneURL{c}, Invoke: scripted{}})
	if err != nil {
		t.Fatal(err)
	}
	do := func(host, path string, body string, mod func(*http.Request)) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "http://"+host+path, strings.NewReader(body))
		if mod != nil {
			mod(r)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	host := "abc.lambda-url.us-east-1.localhost:9000"
	cases := []struct {
		host, path string
		status     int
		body       string
	}{
		{host, "/", 200, "ok"},
		{host, "/throttle", 429, `{"Message":"Rate Exceeded."}`},
		{host, "/fail", 502, `{"Message":"Internal Server Error"}`},
		{host, "/broken", 502, `{"Message":"Internal Server Error"}`},
		{host, "/malformed", 502, `{"Message":"Internal Server Error"}`},
		{"zzz.lambda-url.us-east-1.localhost:9000", "/", 404, `{"Message":"Not Found"}`},
	}
	for _, tc := range cases {
		w := do(tc.host, tc.path, "", nil)
		if w.Code != tc.status || strings.TrimSpace(w.Body.String()) != tc.body {
			t.Errorf("%s%s: %d %q, want %d %q", tc.host, tc.path, w.Code, w.Body.String(), tc.status, tc.body)
		}
	}
	if w := do(host, "/", strings.Repeat("x", MaxRequestBytes+1), nil); w.Code != 413 {
		t.Errorf("oversized body: %d", w.Code)
	}

	// AWS_IAM: refused signatures and foreign accounts are 403.
	c.AuthType = AuthIAM
	verify := func(r *http.Request) (auth.Caller, error) {
		switch r.Header.Get("Authorization") {
		case "same":
			return auth.Caller{Account: "111111111111", AccessKeyID: "AK1"}, nil
		case "other":
			return auth.Caller{Account: "222222222222", AccessKeyID: "AK2"}, nil
		}
		return auth.Caller{}, errors.New("bad signature")
	}
	h, _ = New(Config{Lookup: oneURL{c}, Invoke: scripted{}, Verify: verify})
	for authz, want := range map[string]int{"": 403, "other": 403, "same": 200} {
		w := do(host, "/", "", func(r *http.Request) { r.Header.Set("Authorization", authz) })
		if w.Code != want {
			t.Errorf("AWS_IAM with %q: %d %s, want %d", authz, w.Code, w.Body, want)
		}
	}
}
