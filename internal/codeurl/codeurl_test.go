package codeurl

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/codestore"
)

func testZip(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("hello.txt")
	w.Write([]byte("hello from a package\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	code  *codestore.Store
	clk   *clock
	srv   *httptest.Server
	sign  *Signer
	bb    *backbone.Backbone
	dir   string
	zip   []byte
	pkg   codestore.Package
	newFn func(t *testing.T) *Signer
}

func setup(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	bb, err := backbone.Start(backbone.Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	e := &env{bb: bb, dir: dir, clk: &clock{}}
	e.clk.ns.Store(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano())
	if e.code, err = codestore.New(codestore.Config{JS: bb.JetStream()}); err != nil {
		t.Fatal(err)
	}
	e.zip = testZip(t)
	if e.pkg, err = e.code.Put(context.Background(), e.zip); err != nil {
		t.Fatal(err)
	}
	e.newFn = func(t *testing.T) *Signer {
		s, err := New(context.Background(), Config{JS: bb.JetStream(), Packages: e.code, Clock: e.clk.now,
			IsNotFound: func(err error) bool { return errors.Is(err, codestore.ErrNotFound) }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e.sign = e.newFn(t)
	mux := http.NewServeMux()
	mux.Handle(PathPrefix, e.sign.Handler())
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func get(t *testing.T, u string) (int, string, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

const arn = "arn:aws:lambda:us-east-1:000000000000:function:f"

func TestLinkServesExactZip(t *testing.T) {
	e := setup(t)
	u := e.sign.URL(e.srv.URL, e.pkg.Digest, arn)
	st, ct, body := get(t, u)
	if st != 200 || ct != "application/zip" || !bytes.Equal(body, e.zip) {
		t.Fatalf("GET = %d %s, %d bytes (want %d)", st, ct, len(body), len(e.zip))
	}
	// Just before the 10 minutes are over it still works.
	e.clk.advance(DefaultTTL - time.Second)
	if st, _, _ := get(t, u); st != 200 {
		t.Fatalf("GET at 9:59 = %d", st)
	}
	resp, err := http.Head(u)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(e.zip)) {
		t.Fatalf("HEAD = %v, %v", resp, err)
	}
}

func TestExpiredAndTamperedLinksRefused(t *testing.T) {
	e := setup(t)
	u := e.sign.URL(e.srv.URL, e.pkg.Digest, arn)
	parsed, _ := url.Parse(u)
	tamper := func(f func(q url.Values, p *url.URL)) string {
		p := *parsed
		q := p.Query()
		f(q, &p)
		p.RawQuery = q.Encode()
		return p.String()
	}
	cases := map[string]struct {
		url  string
		code string
	}{
		"longer lifetime":  {tamper(func(q url.Values, _ *url.URL) { q.Set("X-Amz-Expires", "6000") }), "SignatureDoesNotMatch"},
		"later date":       {tamper(func(q url.Values, _ *url.URL) { q.Set("X-Amz-Date", "20300101T000000Z") }), "SignatureDoesNotMatch"},
		"other resource":   {tamper(func(q url.Values, _ *url.URL) { q.Set("Resource", arn+"2") }), "SignatureDoesNotMatch"},
		"other digest":     {tamper(func(_ url.Values, p *url.URL) { p.Path = PathPrefix + strings.Repeat("0", 64) + ".zip" }), "SignatureDoesNotMatch"},
		"forged signature": {tamper(func(q url.Values, _ *url.URL) { q.Set("X-Amz-Signature", strings.Repeat("ab", 32)) }), "SignatureDoesNotMatch"},
		"unsigned":         {tamper(func(q url.Values, _ *url.URL) { q.Del("X-Amz-Signature") }), "AccessDenied"},
		"bad lifetime":     {tamper(func(q url.Values, _ *url.URL) { q.Set("X-Amz-Expires", "-1") }), "AuthorizationQueryParametersError"},
	}
	for name, c := range cases {
		st, ct, body := get(t, c.url)
		if st != 403 || ct != "application/xml" || !strings.Contains(string(body), "<Code>"+c.code+"</Code>") {
			t.Errorf("%s: %d %s %s", name, st, ct, body)
		}
	}
	e.clk.advance(DefaultTTL)
	st, _, body := get(t, u)
	if st != 403 || !strings.Contains(string(body), "<Code>AccessDenied</Code><Message>Request has expired</Message>") {
		t.Fatalf("expired: %d %s", st, body)
	}
}

func TestSecretSharedAndSurvivesRestart(t *testing.T) {
	e := setup(t)
	u := e.sign.URL(e.srv.URL, e.pkg.Digest, arn)
	// A second server of the same backbone accepts the first one's links.
	second := e.newFn(t)
	srv2 := httptest.NewServer(second.Handler())
	defer srv2.Close()
	u2 := strings.Replace(u, e.srv.URL, srv2.URL, 1)
	if st, _, body := get(t, u2); st != 200 || !bytes.Equal(body, e.zip) {
		t.Fatalf("link of server 1 on server 2: %d", st)
	}
	// After a restart of the backbone the key is the same.
	e.bb.Close()
	bb, err := backbone.Start(backbone.Config{DataDir: e.dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	code, err := codestore.New(codestore.Config{JS: bb.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	s3, err := New(context.Background(), Config{JS: bb.JetStream(), Packages: code, Clock: e.clk.now})
	if err != nil {
		t.Fatal(err)
	}
	srv3 := httptest.NewServer(s3.Handler())
	defer srv3.Close()
	if st, _, body := get(t, strings.Replace(u, e.srv.URL, srv3.URL, 1)); st != 200 || !bytes.Equal(body, e.zip) {
		t.Fatalf("link after restart: %d", st)
	}
	// A server with another secret refuses it.
	if !bytes.Equal(s3.key, e.sign.key) {
		t.Fatal("key changed across restart")
	}
}

func TestMissingPackageIsNoSuchKey(t *testing.T) {
	e := setup(t)
	missing := strings.Repeat("1", 64)
	st, _, body := get(t, e.sign.URL(e.srv.URL, missing, arn))
	if st != 404 || !strings.Contains(string(body), "<Code>NoSuchKey</Code>") {
		t.Fatalf("missing package: %d %s", st, body)
	}
}
