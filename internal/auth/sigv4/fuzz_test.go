package sigv4

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/auth"
)

// FuzzParseAuthorization: any header parses or is refused with an
// IncompleteSignatureException, never panics; a parsed one is consistent;
// and the middleware never answers a request carrying it with a 5xx.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"AWS4-HMAC-SHA256 Credential=AKFLAAAAAAAAAAAAAAAA/20261129/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("a", 64),
		"AWS4-HMAC-SHA256 Credential=AKFLAAAAAAAAAAAAAAAA/20261129/us-east-1/lambda/aws4_request,SignedHeaders=host,Signature=" + strings.Repeat("0", 64),
		"AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=, Signature=",
		"AWS4-HMAC-SHA256 Credential=/////, Credential=x",
		"AWS4-HMAC-SHA256",
		"AWS4-HMAC-SHA256 ,,,,",
		"Bearer abc",
		"AWS AKID:sig",
		"",
		"AWS4-HMAC-SHA256 Credential=\xff/20261129/us-east-1/lambda/aws4_request, SignedHeaders=HOST, Signature=zz",
	} {
		f.Add(s)
	}
	m, err := New(Config{Mode: auth.ModeRequired, DefaultAccount: "000000000000",
		Keys:  &keys{m: map[string]auth.Key{keyA.AccessKeyID: keyA}},
		Clock: func() time.Time { return time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) },
	}, http.HandlerFunc(echo))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Type != IncompleteSignature || e.Status != 403 {
				t.Fatalf("error %v is not an IncompleteSignatureException", err)
			}
		} else {
			if a.AccessKeyID == "" || len(a.Date) != 8 || len(a.Signature) != 64 || len(a.Signed) == 0 {
				t.Fatalf("accepted an incomplete header %q: %+v", h, a)
			}
		}
		if strings.ContainsAny(h, "\r\n\x00") {
			return // not a header value a client can send
		}
		r := httptest.NewRequest("POST", "/2015-03-31/functions/f/invocations", strings.NewReader("{}"))
		r.Header.Set("Authorization", h)
		r.Header.Set("X-Amz-Date", "20261129T120000Z")
		w := httptest.NewRecorder()
		m.ServeHTTP(w, r.WithContext(context.Background()))
		if w.Code >= 500 || w.Code == 200 {
			t.Fatalf("header %q: status %d %s", h, w.Code, w.Body)
		}
	})
}
