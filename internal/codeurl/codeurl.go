// Package codeurl makes and serves the time-limited download links of
// code packages: GetFunction's Code.Location and GetLayerVersion's
// Content.Location. Lambda answers with a presigned S3 URL valid for 10
// minutes; Flint answers with a URL of its own API listener, signed the
// same way in spirit:
//
//	<base>/flint/v1/code/<digest>.zip?Resource=<arn>&X-Amz-Date=<yyyymmddThhmmssZ>&X-Amz-Expires=600&X-Amz-Signature=<hex>
//
// The signature is an HMAC-SHA256, under a server secret, of the digest,
// the resource (the function or layer version ARN the link was made for),
// the signing time and the lifetime. Whoever holds the link can fetch
// that one package, without AWS credentials (plain curl works), until it
// expires; changing any part of it breaks the signature. Refusals are
// S3's: 403 with an XML error document (AccessDenied "Request has
// expired", SignatureDoesNotMatch), 404 NoSuchKey for a package that is
// gone.
//
// The secret lives in the backbone's KV (bucket SecretsBucket): created by
// the first server that needs it, read by every other, so links survive
// restarts and any server of a cluster serves the links any other made.
package codeurl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/secrets"
)

// PathPrefix is the path under which links are served; mount Handler on it.
const PathPrefix = "/flint/v1/code/"

// DefaultTTL is how long a link is valid: Lambda's 10 minutes.
const DefaultTTL = 10 * time.Minute

// maxTTL bounds the lifetime a link may claim (S3's 7 days).
const maxTTL = 7 * 24 * time.Hour

// SecretsBucket is the KV bucket holding the signing key (package
// secrets); signingKey is the key's name in it.
const (
	SecretsBucket = secrets.Bucket
	signingKey    = "code-url-hmac"
)

// amzDate is the layout of X-Amz-Date.
const amzDate = "20060102T150405Z"

// Packages gives the zips links point to (internal/codestore.Store).
type Packages interface {
	// Get returns the zip stored under digest; a missing one wraps
	// ErrNotFound of the store (any error is answered 404 or 500, see
	// Config.IsNotFound).
	Get(ctx context.Context, digest string) ([]byte, error)
}

// Config configures a Signer.
type Config struct {
	// JS is the backbone's JetStream context, where the secret lives.
	// Required.
	JS jetstream.JetStream
	// Replicas of the secrets bucket (default 1); an existing one is
	// updated.
	Replicas int
	// Packages serves the zips. Required for Handler.
	Packages Packages
	// IsNotFound tells a missing package from other errors of Packages.
	IsNotFound func(error) bool
	// TTL is the links' lifetime (default DefaultTTL).
	TTL time.Duration
	// Clock is the time source (default time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.JS == nil:
		return errors.New("codeurl: config needs a JetStream context")
	case c.TTL < 0 || c.TTL > maxTTL:
		return fmt.Errorf("codeurl: TTL %v out of range (0, %v]", c.TTL, maxTTL)
	}
	return nil
}

// Signer makes and checks links. It is safe for concurrent use.
type Signer struct {
	cfg Config
	key []byte // immutable after New
}

// New loads the cluster's signing key, creating it when this is the
// first server to need one. ctx covers the backbone calls only.
func New(ctx context.Context, cfg Config) (*Signer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IsNotFound == nil {
		cfg.IsNotFound = func(error) bool { return false }
	}
	key, err := loadKey(ctx, cfg.JS, cfg.Replicas, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &Signer{cfg: cfg, key: key}, nil
}

// loadKey reads the signing key, creating it if absent.
func loadKey(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) ([]byte, error) {
	key, err := secrets.Load(ctx, js, replicas, signingKey, log)
	if err != nil {
		return nil, fmt.Errorf("codeurl: signing key: %w", err)
	}
	return key, nil
}

// sign is the hex HMAC of one link's parts.
func (s *Signer) sign(digest, resource, date string, expires int64) string {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "flint-code-url\n%s\n%s\n%s\n%d", digest, resource, date, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// URL returns a link to the package with the digest, made for resource
// (a function or layer version ARN), valid for the configured TTL from
// now. base is the scheme and host the client reached the API on (e.g.
// "http://127.0.0.1:9000"), see BaseURL.
func (s *Signer) URL(base, digest, resource string) string {
	date := s.cfg.Clock().UTC().Format(amzDate)
	expires := int64(s.cfg.TTL / time.Second)
	q := url.Values{}
	q.Set("Resource", resource)
	q.Set("X-Amz-Date", date)
	q.Set("X-Amz-Expires", strconv.FormatInt(expires, 10))
	q.Set("X-Amz-Signature", s.sign(digest, resource, date, expires))
	return strings.TrimSuffix(base, "/") + PathPrefix + digest + ".zip?" + q.Encode()
}

// BaseURL is the scheme and host a request came in on: the base of the
// links handed back to its client.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// s3Error is S3's error document.
type s3Error struct {
	XMLName    xml.Name `xml:"Error"`
	Code       string   `xml:"Code"`
	Message    string   `xml:"Message"`
	Expires    string   `xml:"Expires,omitempty"`
	ServerTime string   `xml:"ServerTime,omitempty"`
	Key        string   `xml:"Key,omitempty"`
}

func writeS3Error(w http.ResponseWriter, status int, e s3Error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	_ = xml.NewEncoder(&b).Encode(e)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// errRefused is a link the Handler refuses.
type refusal struct {
	status int
	doc    s3Error
}

// check verifies a link's signature and lifetime; it returns the digest.
func (s *Signer) check(r *http.Request) (string, *refusal) {
	digest, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, PathPrefix), ".zip")
	q := r.URL.Query()
	resource, date, exp, sig := q.Get("Resource"), q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"), q.Get("X-Amz-Signature")
	if !ok || digest == "" || strings.Contains(digest, "/") || date == "" || exp == "" || sig == "" {
		return "", &refusal{http.StatusForbidden, s3Error{Code: "AccessDenied",
			Message: "Query-string authentication requires the Resource, X-Amz-Date, X-Amz-Expires and X-Amz-Signature parameters"}}
	}
	expires, err := strconv.ParseInt(exp, 10, 64)
	signed, derr := time.Parse(amzDate, date)
	if err != nil || derr != nil || expires <= 0 || expires > int64(maxTTL/time.Second) {
		return "", &refusal{http.StatusForbidden, s3Error{Code: "AuthorizationQueryParametersError",
			Message: "X-Amz-Date must be yyyyMMddTHHmmssZ and X-Amz-Expires a number of seconds between 1 and 604800"}}
	}
	want := s.sign(digest, resource, date, expires)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return "", &refusal{http.StatusForbidden, s3Error{Code: "SignatureDoesNotMatch",
			Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."}}
	}
	now := s.cfg.Clock()
	deadline := signed.Add(time.Duration(expires) * time.Second)
	if !now.Before(deadline) {
		return "", &refusal{http.StatusForbidden, s3Error{Code: "AccessDenied", Message: "Request has expired",
			Expires: deadline.UTC().Format(time.RFC3339), ServerTime: now.UTC().Format(time.RFC3339)}}
	}
	return digest, nil
}

// Handler serves links (GET and HEAD, with Range support) under
// PathPrefix.
func (s *Signer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeS3Error(w, http.StatusMethodNotAllowed, s3Error{Code: "MethodNotAllowed",
				Message: "The specified method is not allowed against this resource."})
			return
		}
		digest, ref := s.check(r)
		if ref != nil {
			s.cfg.Logger.Debug("code link refused", "code", ref.doc.Code, "path", r.URL.Path)
			writeS3Error(w, ref.status, ref.doc)
			return
		}
		if s.cfg.Packages == nil {
			writeS3Error(w, http.StatusInternalServerError, s3Error{Code: "InternalError", Message: "no package store configured"})
			return
		}
		data, err := s.cfg.Packages.Get(r.Context(), digest)
		if err != nil {
			if s.cfg.IsNotFound(err) {
				writeS3Error(w, http.StatusNotFound, s3Error{Code: "NoSuchKey", Message: "The specified key does not exist.", Key: digest + ".zip"})
				return
			}
			s.cfg.Logger.Error("serving code link", "digest", digest, "err", err)
			writeS3Error(w, http.StatusInternalServerError, s3Error{Code: "InternalError",
				Message: "We encountered an internal error. Please try again."})
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("ETag", `"`+digest+`"`)
		http.ServeContent(w, r, digest+".zip", time.Time{}, bytes.NewReader(data))
	})
}
