package funcurl

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
)

func TestMatch(t *testing.T) {
	h, err := New(Config{Lookup: nopLookup{}, Invoke: nopInvoker{}, Domain: "Example.COM"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"abc.lambda-url.us-east-1.example.com":      "abc",
		"ABC.lambda-url.us-east-1.example.com:9000": "abc",
		"abc.lambda-url.us-east-1.example.com.":     "abc",
		"a.b.lambda-url.us-east-1.example.com":      "",
		".lambda-url.us-east-1.example.com":         "",
		"abc.lambda-url.eu-west-1.example.com":      "",
		"127.0.0.1:9000":                            "",
		"abc.lambda-url.us-east-1.example.com.evil": "",
		"abc.lambda-url.us-east-1.localhost:9000":   "",
	} {
		id, ok := h.Match(host)
		if id != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", host, id, ok, want)
		}
	}
	if got := h.URL("abc", "9000"); got != "http://abc.lambda-url.us-east-1.example.com:9000/" {
		t.Errorf("URL = %q", got)
	}
	if _, err := New(Config{Lookup: nopLookup{}, Invoke: nopInvoker{}, Domain: "http://x"}); err == nil {
		t.Error("a domain with a scheme was accepted")
	}
}

func TestMapResponse(t *testing.T) {
	cases := []struct {
		payload string
		status  int
		body    string
		ctype   string
		cookies []string
		bad     bool
	}{
		{`"hello"`, 200, "hello", "application/json", nil, false},
		{`{"a":1}`, 200, `{"a":1}`, "application/json", nil, false},
		{`[1,2]`, 200, `[1,2]`, "application/json", nil, false},
		{`null`, 200, `null`, "application/json", nil, false},
		{`{"statusCode":404,"body":"nope","headers":{"content-type":"text/plain"},"cookies":["a=1","b=2"]}`, 404, "nope", "text/plain", []string{"a=1", "b=2"}, false},
		{`{"statusCode":200,"body":"AAE=","isBase64Encoded":true,"headers":{"content-type":"application/octet-stream"}}`, 200, "\x00\x01", "application/octet-stream", nil, false},
		{`{"statusCode":204}`, 204, "", "", nil, false},
		{`{"statusCode":99}`, 0, "", "", nil, true},
		{`{"statusCode":"200"}`, 0, "", "", nil, true},
		{`{"statusCode":200,"headers":{"bad header":"x"}}`, 0, "", "", nil, true},
		{`{"statusCode":200,"headers":{"x":"a\r\nInjected: 1"}}`, 0, "", "", nil, true},
		{`{"statusCode":200,"body":"%%%","isBase64Encoded":true}`, 0, "", "", nil, true},
	}
	for _, tc := range cases {
		out, err := mapResponse([]byte(tc.payload))
		if (err != nil) != tc.bad {
			t.Errorf("%s: err %v", tc.payload, err)
			continue
		}
		if tc.bad {
			continue
		}
		if out.status != tc.status || string(out.body) != tc.body || out.header.Get("Content-Type") != tc.ctype ||
			strings.Join(out.header.Values("Set-Cookie"), "|") != strings.Join(tc.cookies, "|") {
			t.Errorf("%s: got %d %q %v", tc.payload, out.status, out.body, out.header)
		}
	}
}

func TestNewEvent(t *testing.T) {
	r := httptest.NewRequest("PUT", "http://abc.lambda-url.us-east-1.localhost:9000/a%2Fb/c?x=1&x=2&y=", strings.NewReader(""))
	r.Header.Add("Cookie", "k1=v1; k2=v2")
	r.Header.Add("X-Multi", "1")
	r.Header.Add("X-Multi", "2")
	r.Header.Set("User-Agent", "ua")
	now := time.Date(2026, 3, 12, 19, 3, 58, 390e6, time.UTC)
	ev := newEvent(r, []byte("hi\xff"), "123456789012", "abc", "abc.lambda-url.us-east-1.localhost", "req-1", now)
	if ev.RawPath != "/a%2Fb/c" || ev.RequestContext.HTTP.Path != "/a/b/c" || ev.RawQueryString != "x=1&x=2&y=" ||
		ev.QueryStringParameters["x"] != "1,2" || ev.QueryStringParameters["y"] != "" || ev.Headers["x-multi"] != "1,2" ||
		ev.Headers["cookie"] != "" || strings.Join(ev.Cookies, "|") != "k1=v1|k2=v2" || !ev.IsBase64Encoded || ev.Body != "aGn/" ||
		ev.RequestContext.Time != "12/Mar/2026:19:03:58 +0000" || ev.RequestContext.TimeEpoch != now.UnixMilli() ||
		ev.RequestContext.HTTP.Method != "PUT" || ev.RequestContext.HTTP.UserAgent != "ua" || ev.Headers["host"] != r.Host {
		b, _ := json.Marshal(ev)
		t.Errorf("event: %s", b)
	}
	r = httptest.NewRequest("POST", "http://abc.lambda-url.us-east-1.localhost/", strings.NewReader(""))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	if ev := newEvent(r, []byte(`{"a":1}`), "", "abc", "", "", now); ev.IsBase64Encoded || ev.Body != `{"a":1}` || ev.QueryStringParameters != nil {
		t.Errorf("json body: %+v", ev)
	}
}

func TestCORS(t *testing.T) {
	c := &metadata.URLCors{AllowOrigins: []string{"https://a.example"}, AllowMethods: []string{"GET"}, AllowHeaders: []string{"x-h"},
		ExposeHeaders: []string{"x-e"}, MaxAge: 60, AllowCredentials: true}
	r := httptest.NewRequest("OPTIONS", "/", nil)
	r.Header.Set("Origin", "https://A.example")
	r.Header.Set("Access-Control-Request-Method", "GET")
	w := httptest.NewRecorder()
	if !preflight(w, r, c) {
		t.Fatal("preflight not answered")
	}
	h := w.Result().Header
	if w.Code != 200 || h.Get("Access-Control-Allow-Origin") != "https://A.example" || h.Get("Access-Control-Allow-Methods") != "GET" ||
		h.Get("Access-Control-Allow-Headers") != "x-h" || h.Get("Access-Control-Max-Age") != "60" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight: %d %v", w.Code, h)
	}
	if preflight(httptest.NewRecorder(), r, nil) {
		t.Error("a URL without Cors answered a preflight (the function should see it)")
	}
	hdr := http.Header{}
	corsHeaders(hdr, r, &metadata.URLCors{AllowOrigins: []string{"*"}})
	if hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("wildcard: %v", hdr)
	}
	hdr = http.Header{}
	r.Header.Set("Origin", "https://b.example")
	corsHeaders(hdr, r, c)
	if len(hdr) != 0 {
		t.Errorf("foreign origin got CORS headers: %v", hdr)
	}
}

// recStream is a urlStream over a recorder.
func recStream(t *testing.T) (*urlStream, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	return &urlStream{w: w, rc: http.NewResponseController(w), r: r}, w
}

func TestURLStreamPrelude(t *testing.T) {
	s, w := recStream(t)
	if err := s.Start(invocation.ContentTypeHTTPPrelude); err != nil {
		t.Fatal(err)
	}
	// The prelude arrives split across writes, the delimiter too.
	for _, part := range []string{`{"statusCode":201,"headers":{"x-a":"1"},`, `"cookies":["c=1"]}` + "\x00\x00\x00", "\x00\x00\x00\x00\x00body", "-more"} {
		if _, err := s.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.finish() || w.Code != 201 || w.Header().Get("X-A") != "1" || w.Header().Get("Set-Cookie") != "c=1" || w.Body.String() != "body-more" {
		t.Errorf("prelude stream: %d %v %q", w.Code, w.Header(), w.Body.String())
	}
	if _, err := s.Write([]byte("late")); err == nil {
		t.Error("write after finish accepted")
	}

	s, w = recStream(t)
	s.Start("text/event-stream")
	s.Write([]byte("data: 1\n\n"))
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/event-stream" || w.Body.String() != "data: 1\n\n" || !w.Flushed {
		t.Errorf("plain stream: %d %v %q flushed %v", w.Code, w.Header(), w.Body.String(), w.Flushed)
	}

	s, _ = recStream(t)
	s.Start(invocation.ContentTypeHTTPPrelude)
	if _, err := s.Write([]byte("not json\x00\x00\x00\x00\x00\x00\x00\x00")); err == nil {
		t.Error("a prelude that is not JSON was accepted")
	}
	s, _ = recStream(t)
	s.Start(invocation.ContentTypeHTTPPrelude)
	if _, err := s.Write(bytes.Repeat([]byte("x"), maxPrelude+1)); err == nil {
		t.Error("an endless prelude was accepted")
	}
}

func FuzzMapResponse(f *testing.F) {
	f.Add([]byte(`{"statusCode":200,"headers":{"a":"b"},"cookies":["c"],"body":"x","isBase64Encoded":false}`))
	f.Add([]byte(`"str"`))
	f.Add([]byte(`{"statusCode":301,"body":"AA==","isBase64Encoded":true}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := mapResponse(payload)
		if err != nil {
			return
		}
		if out.status < 100 || out.status > 599 {
			t.Fatalf("status %d", out.status)
		}
		for k, vs := range out.header {
			for _, v := range vs {
				if !validHeader(k, v) {
					t.Fatalf("invalid header %q: %q", k, v)
				}
			}
		}
	})
}

func FuzzURLStreamPrelude(f *testing.F) {
	f.Add([]byte(`{"statusCode":200}` + "\x00\x00\x00\x00\x00\x00\x00\x00body"))
	f.Add([]byte(`{"headers":{"a":"b"},"cookies":["x=1"]}` + "\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, w := recStream(t)
		s.Start(invocation.ContentTypeHTTPPrelude)
		if _, err := s.Write(data); err != nil {
			return
		}
		s.finish()
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("status %d", w.Code)
		}
	})
}

type nopLookup struct{}

func (nopLookup) LookupURL(ctx context.Context, id string) (*metadata.URLConfig, error) {
	return nil, metadata.ErrURLNotFound
}

type nopInvoker struct{}

func (nopInvoker) InvokeURL(ctx context.Context, c *metadata.URLConfig, req invocation.Request) (*metadata.Function, invocation.Result, error) {
	return nil, invocation.Result{}, nil
}
