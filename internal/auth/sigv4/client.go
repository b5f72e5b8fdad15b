package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Sign signs req for Flint's API (service "lambda" in region) with creds,
// the way the AWS SDKs sign a Lambda request: the body's SHA-256 as the
// payload hash. The body is read and replaced by an in-memory copy.
// Flint's own endpoints (logs, queues, keys) are called with it.
func Sign(ctx context.Context, req *http.Request, creds aws.Credentials, region string, now time.Time) error {
	hash := emptySHA256
	if req.Body != nil && req.Body != http.NoBody {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return fmt.Errorf("sign: read body: %w", err)
		}
		sum := sha256.Sum256(body)
		hash = hex.EncodeToString(sum[:])
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	return v4.NewSigner().SignHTTP(ctx, creds, req, hash, "lambda", region, now)
}

// Transport is an http.RoundTripper that signs every request with
// Sign before sending it.
type Transport struct {
	Base        http.RoundTripper // default http.DefaultTransport
	Credentials aws.CredentialsProvider
	Region      string
}

// CloseIdleConnections closes Base's idle connections (http.Client's
// CloseIdleConnections reaches it through this).
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip signs a clone of req and sends it.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	creds, err := t.Credentials.Retrieve(req.Context())
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	r := req.Clone(req.Context())
	if err := Sign(req.Context(), r, creds, t.Region, time.Now()); err != nil {
		return nil, err
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}
