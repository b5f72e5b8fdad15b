package sigv4

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/flintdev/flint/internal/auth"
)

// keys is an in-memory KeyLookup for the middleware's own tests; the
// JetStream store has its tests in keystore.
type keys struct {
	mu sync.Mutex
	m  map[string]auth.Key
}

func (k *keys) LookupKey(_ context.Context, id string) (auth.Key, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, ok := k.m[id]
	return key, ok, nil
}

var (
	keyA    = auth.Key{AccessKeyID: "AKFLAAAAAAAAAAAAAAAA", SecretAccessKey: "secretA/+xyz", Account: "111111111111"}
	keyRoot = auth.Key{AccessKeyID: "AKFLROOTROOTROOTROOT", SecretAccessKey: "rootsecret", Account: "000000000000", Root: true}
)

// echo answers with the caller and the body it saw.
func echo(w http.ResponseWriter, r *http.Request) {
	c, _ := auth.CallerOf(r.Context())
	body, _ := io.ReadAll(r.Body)
	json.NewEncoder(w).Encode(map[string]any{"account": c.Account, "key": c.AccessKeyID, "root": c.Root, "body": string(body)})
}

func newServer(t *testing.T, clock func() time.Time) *httptest.Server {
	t.Helper()
	m, err := New(Config{
		Mode:           auth.ModeRequired,
		Keys:           &keys{m: map[string]auth.Key{keyA.AccessKeyID: keyA, keyRoot.AccessKeyID: keyRoot}},
		DefaultAccount: "000000000000",
		RootOnly:       []string{"/flint/v1/keys", "/flint/v1/keys/"},
		Clock:          clock,
	}, http.HandlerFunc(echo))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(m)
	t.Cleanup(s.Close)
	return s
}

// signed builds a request signed as the Go SDK signs Lambda requests.
func signed(t *testing.T, method, url string, body []byte, k auth.Key, at time.Time, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if err := Sign(context.Background(), req, aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey}, "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, string, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body
}

func TestVerify(t *testing.T) {
	now := time.Now()
	s := newServer(t, func() time.Time { return now })
	path := s.URL + "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Afunction%3Af/invocations?Qualifier=%24LATEST&a=b%20c"
	payload := []byte(`{"hello":"world"}`)

	t.Run("valid", func(t *testing.T) {
		st, typ, body := do(t, signed(t, "POST", path, payload, keyA, now, "X-Amz-Invocation-Type", "Event", "Content-Type", "application/json"))
		if st != 200 || body["account"] != keyA.Account || body["key"] != keyA.AccessKeyID || body["root"] != false || body["body"] != string(payload) {
			t.Fatalf("status %d %s body %v", st, typ, body)
		}
	})
	t.Run("unsigned payload", func(t *testing.T) {
		req, _ := http.NewRequest("PUT", s.URL+"/x", bytes.NewReader(payload))
		req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyA.AccessKeyID, SecretAccessKey: keyA.SecretAccessKey},
			req, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", now); err != nil {
			t.Fatal(err)
		}
		if st, typ, body := do(t, req); st != 200 || body["body"] != string(payload) {
			t.Fatalf("status %d %s body %v", st, typ, body)
		}
	})
	t.Run("clock skew within 5 minutes", func(t *testing.T) {
		for _, d := range []time.Duration{-4 * time.Minute, 4 * time.Minute} {
			if st, typ, _ := do(t, signed(t, "GET", s.URL+"/2015-03-31/functions", nil, keyA, now.Add(d))); st != 200 {
				t.Fatalf("skew %v: status %d %s", d, st, typ)
			}
		}
	})

	refusals := []struct {
		name   string
		req    func() *http.Request
		status int
		typ    string
		msg    string
	}{
		{"unsigned", func() *http.Request { r, _ := http.NewRequest("GET", s.URL+"/2015-03-31/functions", nil); return r },
			403, MissingAuthenticationToken, "Missing Authentication Token"},
		{"unknown key", func() *http.Request {
			return signed(t, "GET", s.URL+"/2015-03-31/functions", nil, auth.Key{AccessKeyID: "AKFLUNKNOWNUNKNOWN00", SecretAccessKey: "x"}, now)
		}, 403, UnrecognizedClient, "The security token included in the request is invalid."},
		{"session token", func() *http.Request {
			return signed(t, "GET", s.URL+"/2015-03-31/functions", nil, keyA, now, "X-Amz-Security-Token", "tok")
		}, 403, UnrecognizedClient, "The security token included in the request is invalid."},
		{"wrong secret", func() *http.Request {
			k := keyA
			k.SecretAccessKey = "not the secret"
			return signed(t, "GET", s.URL+"/2015-03-31/functions", nil, k, now)
		}, 403, InvalidSignature, "The request signature we calculated does not match the signature you provided."},
		{"tampered body", func() *http.Request {
			r := signed(t, "POST", path, payload, keyA, now)
			r.Body = io.NopCloser(strings.NewReader(`{"hello":"worle"}`))
			return r
		}, 403, InvalidSignature, "does not match"},
		{"tampered query", func() *http.Request {
			r := signed(t, "POST", path, payload, keyA, now)
			r.URL.RawQuery = "Qualifier=1"
			return r
		}, 403, InvalidSignature, "does not match"},
		{"tampered signed header", func() *http.Request {
			r := signed(t, "POST", path, payload, keyA, now, "X-Amz-Invocation-Type", "Event")
			r.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
			return r
		}, 403, InvalidSignature, "does not match"},
		{"six minutes old", func() *http.Request {
			return signed(t, "GET", s.URL+"/2015-03-31/functions", nil, keyA, now.Add(-6*time.Minute))
		},
			403, InvalidSignature, "Signature expired: "},
		{"six minutes ahead", func() *http.Request {
			return signed(t, "GET", s.URL+"/2015-03-31/functions", nil, keyA, now.Add(6*time.Minute))
		},
			403, InvalidSignature, "Signature not yet current: "},
		{"other region", func() *http.Request {
			r, _ := http.NewRequest("GET", s.URL+"/2015-03-31/functions", nil)
			v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyA.AccessKeyID, SecretAccessKey: keyA.SecretAccessKey}, r, emptySHA256, "lambda", "eu-west-1", now)
			return r
		}, 403, InvalidSignature, "Credential should be scoped to a valid region."},
		{"malformed header", func() *http.Request {
			r, _ := http.NewRequest("GET", s.URL+"/2015-03-31/functions", nil)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
			return r
		}, 403, IncompleteSignature, "requires 'SignedHeaders'"},
		{"root-only path", func() *http.Request { return signed(t, "GET", s.URL+"/flint/v1/keys", nil, keyA, now) },
			403, AccessDenied, "arn:aws:iam::111111111111:root"},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			st, typ, body := do(t, c.req())
			msg, _ := body["message"].(string)
			if st != c.status || typ != c.typ || !strings.Contains(msg, c.msg) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", st, typ, msg, c.status, c.typ, c.msg)
			}
		})
	}
	t.Run("root key on root-only path", func(t *testing.T) {
		if st, typ, body := do(t, signed(t, "GET", s.URL+"/flint/v1/keys", nil, keyRoot, now)); st != 200 || body["root"] != true {
			t.Fatalf("status %d %s %v", st, typ, body)
		}
	})
}

func TestExpiredMessage(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 10, 0, 0, time.UTC)
	e := expired(now.Add(-6*time.Minute), now, 5*time.Minute)
	want := "Signature expired: 20261129T120400Z is now earlier than 20261129T120500Z (20261129T121000Z - 5 min.)"
	if e.Message != want || e.Type != InvalidSignature || e.Status != 403 {
		t.Fatalf("got %+v, want %q", e, want)
	}
}

func TestDevModeAndPublicPaths(t *testing.T) {
	m, err := New(Config{Mode: auth.ModeDev, DefaultAccount: "000000000000"}, http.HandlerFunc(echo))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(m)
	defer s.Close()
	r, _ := http.NewRequest("GET", s.URL+"/2015-03-31/functions", nil)
	if st, _, body := do(t, r); st != 200 || body["account"] != "000000000000" || body["root"] != true {
		t.Fatalf("dev mode: %d %v", st, body)
	}
	// Required mode without keys is a configuration error.
	if _, err := New(Config{Mode: auth.ModeRequired, DefaultAccount: "000000000000"}, http.HandlerFunc(echo)); err == nil {
		t.Fatal("ModeRequired without a key store was accepted")
	}
	m, _ = New(Config{Mode: auth.ModeRequired, Keys: &keys{}, DefaultAccount: "000000000000"}, http.HandlerFunc(echo))
	s2 := httptest.NewServer(m)
	defer s2.Close()
	r, _ = http.NewRequest("GET", s2.URL+"/healthz", nil)
	if st, _, body := do(t, r); st != 200 || body["account"] != "" {
		t.Fatalf("/healthz: %d %v", st, body)
	}
}

// BenchmarkVerify measures what verification adds to one request: the
// middleware in ModeRequired against the same middleware in ModeDev,
// over the same signed 1 KB Invoke request.
func BenchmarkVerify(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	url := "http://127.0.0.1:9000/2015-03-31/functions/bench/invocations"
	req, _ := http.NewRequest("POST", url, bytes.NewReader(payload))
	now := time.Now()
	if err := Sign(context.Background(), req, aws.Credentials{AccessKeyID: keyA.AccessKeyID, SecretAccessKey: keyA.SecretAccessKey}, "us-east-1", now); err != nil {
		b.Fatal(err)
	}
	sink := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	for _, mode := range []auth.Mode{auth.ModeDev, auth.ModeRequired} {
		m, err := New(Config{Mode: mode, Keys: &keys{m: map[string]auth.Key{keyA.AccessKeyID: keyA}}, DefaultAccount: "000000000000",
			Clock: func() time.Time { return now }}, sink)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(mode), func(b *testing.B) {
			b.ReportAllocs()
			w := httptest.NewRecorder()
			for b.Loop() {
				r := req.Clone(context.Background())
				r.Body = io.NopCloser(bytes.NewReader(payload))
				m.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
