package frontend

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want route
	}{
		{"/2015-03-31/functions", true, route{}},
		{"/2015-03-31/functions/", true, route{}},
		{"/2015-03-31/functions/f", true, route{function: "f"}},
		{"/2015-03-31/functions/f/", true, route{function: "f"}},
		{"/2015-03-31/functions/f/invocations", true, route{function: "f", sub: "invocations"}},
		{"/2015-03-31/functions/a%3Ab/code", true, route{function: "a:b", sub: "code"}},
		{"/2015-03-31/functions/%zz", false, route{}},
		{"/2015-03-31/functions//code", false, route{}},
		{"/2015-03-31/functionsX", false, route{}},
		{"/2015-03-31/functions/f/policy", true, route{function: "f", sub: "policy"}},
		{"/2015-03-31/functions/f/policy/sid-1", true, route{function: "f", sub: "policy", sid: "sid-1"}},
		{"/2015-03-31/functions/f/policy/%zz", false, route{}},
		{"/2015-03-31/functions/f/bogus", false, route{}},
		{"/2015-03-31/functions/f/code/x", false, route{}},
		{"/2015-03-31/functions/f/versions", true, route{function: "f", sub: "versions"}},
		{"/2015-03-31/functions/f/aliases", true, route{function: "f", sub: "aliases"}},
		{"/2015-03-31/functions/f/aliases/live", true, route{function: "f", sub: "aliases", alias: "live"}},
		{"/2015-03-31/functions/f/aliases/%zz", false, route{}},
		{"/2015-03-31/functions/f/versions/1", false, route{}},
		{"/2015-03-31/functions/f/concurrency", false, route{}},
		{"/2017-10-31/functions/f/concurrency", true, route{function: "f", sub: "concurrency"}},
		{"/2019-09-30/functions/f/concurrency", true, route{function: "f", sub: "concurrency"}},
		{"/2019-09-30/functions/f/provisioned-concurrency", true, route{function: "f", sub: "provisioned-concurrency"}},
		{"/2017-10-31/functions/f/provisioned-concurrency", false, route{}},
		{"/2017-10-31/functions", false, route{}},
		{"/2016-08-19/account-settings", true, route{sub: "account-settings"}},
		{"/2016-08-19/functions", false, route{}},
		{"/1999-01-01/functions", false, route{}},
		{"/2015-03-31", false, route{}},
	}
	for _, c := range cases {
		got, ok := parsePath(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("parsePath(%q) = %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzHandler sends arbitrary requests to the API: it must never panic
// and must always answer either a success or a Lambda-style JSON error,
// never a server fault.
func FuzzHandler(f *testing.F) {
	e := newEnv(f)
	zip := base64.StdEncoding.EncodeToString(zipOf(f, map[string]string{"bootstrap": "x"}))
	create := `{"FunctionName":"fz","Runtime":"provided.al2023","Role":"` + testRole + `","Handler":"h","Code":{"ZipFile":"` + zip + `"}}`
	f.Add("POST", "/2015-03-31/functions", []byte(create), "")
	f.Add("GET", "/2015-03-31/functions/fz?Qualifier=$LATEST", []byte(nil), "")
	f.Add("GET", "/2015-03-31/functions?MaxItems=1&Marker=a", []byte(nil), "")
	f.Add("PUT", "/2015-03-31/functions/fz/configuration", []byte(`{"Timeout":5,"Environment":{"Variables":{"AB":"c"}}}`), "")
	f.Add("PUT", "/2015-03-31/functions/fz/code", []byte(`{"ZipFile":"`+zip+`"}`), "")
	f.Add("POST", "/2015-03-31/functions/fz/invocations", []byte(`{"k":[1,2]}`), "Tail")
	f.Add("POST", "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:fz:$LATEST/invocations", []byte(`[`), "Event")
	f.Add("POST", "/2015-03-31/functions/fz/versions", []byte(`{"Description":"v"}`), "")
	f.Add("GET", "/2015-03-31/functions/fz/versions?MaxItems=1&Marker=$LATEST", []byte(nil), "")
	f.Add("POST", "/2015-03-31/functions/fz/aliases", []byte(`{"Name":"live","FunctionVersion":"1","RoutingConfig":{"AdditionalVersionWeights":{"2":0.5}}}`), "")
	f.Add("PUT", "/2015-03-31/functions/fz/aliases/live", []byte(`{"FunctionVersion":"$LATEST","RevisionId":"x"}`), "")
	f.Add("POST", "/2015-03-31/functions/fz:live/invocations", []byte(`{}`), "")
	f.Add("PUT", "/2017-10-31/functions/fz/concurrency", []byte(`{"ReservedConcurrentExecutions":5}`), "")
	f.Add("GET", "/2019-09-30/functions/fz/provisioned-concurrency?List=ALL", []byte(nil), "")
	f.Add("PUT", "/2019-09-30/functions/fz/provisioned-concurrency?Qualifier=live", []byte(`{"ProvisionedConcurrentExecutions":1}`), "")
	f.Add("GET", "/2016-08-19/account-settings", []byte(nil), "")
	f.Add("POST", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:fz", []byte(`{"Tags":{"a":"b"}}`), "")
	f.Add("DELETE", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afz?tagKeys=a", []byte(nil), "")
	f.Add("GET", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:fz", []byte(nil), "")
	f.Add("PUT", "/2019-09-25/functions/fz/event-invoke-config?Qualifier=live", []byte(`{"MaximumRetryAttempts":3}`), "")
	f.Add("GET", "/2019-09-25/functions/fz/event-invoke-config/list?MaxItems=0", []byte(nil), "")
	f.Add("PUT", "/2021-07-20/functions/fz/runtime-management-config?Qualifier=1", []byte(`{"UpdateRuntimeOn":"Auto"}`), "")
	f.Add("PUT", "/2024-08-31/functions/fz/recursion-config", []byte(`{"RecursiveLoop":"Allow"}`), "")
	f.Add("GET", "/2020-06-30/functions/fz/code-signing-config", []byte(nil), "")
	f.Add("POST", "/2014-11-13/functions/fz/invoke-async", []byte(`{}`), "")
	f.Add("POST", "/2015-03-31/functions/fz/policy", []byte(`{}`), "")
	f.Add("GET", "/2021-10-31/functions/fz/urls", []byte(nil), "")
	f.Add("POST", "/2021-10-31/functions/fz/url", []byte(`{"AuthType":"NONE","Cors":{"AllowOrigins":["*"],"MaxAge":5},"InvokeMode":"RESPONSE_STREAM"}`), "")
	f.Add("PUT", "/2021-10-31/functions/fz/url?Qualifier=live", []byte(`{"AuthType":"AWS_IAM"}`), "")
	f.Add("GET", "/2021-10-31/functions/fz/urls?MaxItems=1", []byte(nil), "")
	f.Add("DELETE", "/2021-10-31/functions/fz/url", []byte(nil), "")
	f.Add("POST", "/2021-11-15/functions/fz/response-streaming-invocations", []byte(`{"a":1}`), "Tail")
	f.Add("DELETE", "/2015-03-31/functions/fz?Qualifier=1", []byte(nil), "")
	f.Add("DELETE", "/2015-03-31/functions/fz", []byte(nil), "")
	f.Fuzz(func(t *testing.T, method, path string, body []byte, header string) {
		u, err := url.ParseRequestURI(path)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		if method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		req := &http.Request{
			Method: method, URL: u, RequestURI: path, Header: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "localhost",
		}
		req = req.WithContext(t.Context())
		for _, h := range []string{"X-Amz-Log-Type", "X-Amz-Invocation-Type", "X-Amz-Client-Context"} {
			req.Header.Set(h, header)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		status := rec.Code
		if rec.Header().Get("X-Amzn-RequestId") == "" {
			t.Fatalf("%s %s: no request id", method, path)
		}
		if status >= 500 {
			t.Fatalf("%s %s: server fault %d %s", method, path, status, rec.Body.Bytes())
		}
		if status >= 400 {
			var doc map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc["Type"] == "" || doc["message"]+doc["Message"] == "" {
				t.Fatalf("%s %s: error body %q is not a Lambda error", method, path, rec.Body.Bytes())
			}
			if rec.Header().Get("X-Amzn-ErrorType") == "" {
				t.Fatalf("%s %s: %d without X-Amzn-ErrorType", method, path, status)
			}
			return
		}
		switch status {
		case 200, 201:
			if b := rec.Body.Bytes(); len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
				t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, status, b)
			}
		case 202, 204:
		default:
			t.Fatalf("%s %s: unexpected status %d", method, path, status)
		}
	})
}
