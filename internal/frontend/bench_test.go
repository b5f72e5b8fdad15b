package frontend

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// BenchmarkServeInvoke measures the frontend's own cost of one
// RequestResponse Invoke (echo invoker, no sandbox, no network), plain and
// with the extras of this round side by side: a client context to decode,
// an alias to resolve, and an unknown route looked up in the unsupported
// table.
func BenchmarkServeInvoke(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	if _, err := e.client.CreateFunction(ctx, createInput("bench", zipOf(b, map[string]string{"bootstrap": "x"}))); err != nil {
		b.Fatal(err)
	}
	if _, err := e.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("bench")}); err != nil {
		b.Fatal(err)
	}
	if _, err := e.client.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("bench"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, method, path, clientContext string, want int) {
		payload := []byte(`{"k":"v"}`)
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(method, path, bytes.NewReader(payload))
			if clientContext != "" {
				req.Header.Set("X-Amz-Client-Context", clientContext)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.Bytes())
			}
			io.Copy(io.Discard, rec.Body)
		}
	}
	b.Run("plain", func(b *testing.B) { run(b, "POST", "/2015-03-31/functions/bench/invocations", "", http.StatusOK) })
	b.Run("client-context", func(b *testing.B) {
		run(b, "POST", "/2015-03-31/functions/bench/invocations", "eyJjdXN0b20iOnsiayI6InYifX0=", http.StatusOK)
	})
	b.Run("alias", func(b *testing.B) { run(b, "POST", "/2015-03-31/functions/bench:live/invocations", "", http.StatusOK) })
	b.Run("unsupported-route", func(b *testing.B) { run(b, "GET", "/2021-10-31/functions/bench/urls", "", http.StatusOK) })
}
