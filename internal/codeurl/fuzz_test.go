package codeurl

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzCheck feeds arbitrary link paths and queries to the link checker: it
// must never panic, and accept nothing but links it signed itself.
func FuzzCheck(f *testing.F) {
	s := &Signer{key: []byte(strings.Repeat("k", 32)), cfg: Config{TTL: DefaultTTL,
		Clock: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}}
	good := s.URL("http://h", strings.Repeat("a", 64), "arn:aws:lambda:us-east-1:000000000000:function:f")
	f.Add(strings.TrimPrefix(good, "http://h"))
	f.Add(PathPrefix + "x.zip?X-Amz-Date=20260101T000000Z&X-Amz-Expires=600&X-Amz-Signature=00")
	f.Add(PathPrefix + "../../etc/passwd.zip?Resource=%00")
	f.Fuzz(func(t *testing.T, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r := httptest.NewRequest("GET", "http://h"+u.RequestURI(), nil)
		digest, ref := s.check(r)
		if ref != nil {
			return
		}
		q := r.URL.Query()
		exp := q.Get("X-Amz-Expires")
		if strings.Contains(digest, "/") || q.Get("X-Amz-Signature") != s.sign(digest, q.Get("Resource"), q.Get("X-Amz-Date"), mustInt(exp)) {
			t.Fatalf("accepted %q (digest %q)", target, digest)
		}
	})
}

func mustInt(s string) int64 {
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}
