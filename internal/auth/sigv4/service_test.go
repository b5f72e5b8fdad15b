package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/flintdev/flint/internal/auth"
)

// ServiceFor decides per request which service its signature must be
// scoped to: an SQS request signed for sqs passes, and neither kind passes
// signed for the other's service.
func TestServiceFor(t *testing.T) {
	m, err := New(Config{
		Mode:           auth.ModeRequired,
		Keys:           &keys{m: map[string]auth.Key{keyA.AccessKeyID: keyA}},
		DefaultAccount: "000000000000",
		ServiceFor: func(r *http.Request) string {
			if r.Header.Get("X-Amz-Target") != "" {
				return "sqs"
			}
			return ""
		},
	}, http.HandlerFunc(echo))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	send := func(target, service string) int {
		body := []byte(`{}`)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", bytes.NewReader(body))
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		sum := sha256.Sum256(body)
		creds := aws.Credentials{AccessKeyID: keyA.AccessKeyID, SecretAccessKey: keyA.SecretAccessKey}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		target, service string
		want            int
	}{
		{"AmazonSQS.ListQueues", "sqs", http.StatusOK},
		{"AmazonSQS.ListQueues", "lambda", http.StatusForbidden},
		{"", "lambda", http.StatusOK},
		{"", "sqs", http.StatusForbidden},
	} {
		if got := send(c.target, c.service); got != c.want {
			t.Errorf("target %q signed for %s: %d, want %d", c.target, c.service, got, c.want)
		}
	}
}
