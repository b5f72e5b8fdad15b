// Package sigv4 authenticates Flint's API: an http.Handler middleware that
// wraps the whole listener, verifies each request's AWS Signature Version 4
// (the Authorization header as the AWS SDKs and CLIs send it) against the
// access keys of the key store, and passes the request on with its
// auth.Caller in the context — or refuses it with AWS's own 403 error types:
//
//	no Authorization header             MissingAuthenticationTokenException
//	malformed Authorization header      IncompleteSignatureException
//	unknown access key, session token   UnrecognizedClientException
//	wrong signature, date off by > 5 m  InvalidSignatureException
//	root-only path, caller not root     AccessDeniedException
//
// Only the Authorization header is parsed here (ParseAuthorization);
// the signature itself is recomputed with aws-sdk-go-v2's v4 signer over
// the request's method, path, query, signed headers and payload hash (the
// body's SHA-256, or UNSIGNED-PAYLOAD when X-Amz-Content-Sha256 says so)
// and compared in constant time.
//
// In auth.ModeDev nothing is verified: every request is the root of the
// default account. Public paths (health checks, URLs that carry their own
// signature) pass through without a caller.
package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/flintdev/flint/internal/auth"
)

// KeyLookup finds access keys. *keystore.Store implements it.
type KeyLookup interface {
	// LookupKey returns the key with id; ok is false when there is none.
	// It is called once per verified request: it should answer from
	// memory. Safe for concurrent use.
	LookupKey(ctx context.Context, id string) (k auth.Key, ok bool, err error)
}

// Config configures the middleware.
type Config struct {
	Mode           auth.Mode // required
	Keys           KeyLookup // required in ModeRequired
	DefaultAccount string    // the account of every request in ModeDev
	Region         string    // the region credentials must be scoped to (default us-east-1)
	Service        string    // the service credentials must be scoped to (default "lambda")
	// ServiceFor, when set, names the service a request must be signed for
	// instead of Service when it returns non-empty (e.g. "sqs" for the SQS
	// API served on the same listener).
	ServiceFor func(*http.Request) string
	// MaxSkew is how far X-Amz-Date may be from the server's clock
	// (default 5 minutes, as AWS).
	MaxSkew time.Duration
	// MaxBody is the largest body whose hash is verified (default 80 MiB,
	// above the largest Lambda request); larger ones are refused with 413.
	MaxBody int64
	// Public lists paths served without authentication: an entry ending
	// in "/" is a prefix, others match exactly (default /healthz and
	// /readyz).
	Public []string
	// RootOnly lists path prefixes only a root key may call (key
	// management, server-wide statistics, the cluster view).
	RootOnly []string
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger     // default slog.Default()
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	switch c.Mode {
	case auth.ModeRequired:
		if c.Keys == nil {
			return errors.New("sigv4: a key store is required with --auth required")
		}
	case auth.ModeDev:
	default:
		return fmt.Errorf("sigv4: unknown mode %q", c.Mode)
	}
	if !auth.ValidAccount(c.DefaultAccount) {
		return fmt.Errorf("sigv4: default account %q is not a 12-digit id", c.DefaultAccount)
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Service == "" {
		c.Service = "lambda"
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = 5 * time.Minute
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 80 << 20
	}
	if c.Public == nil {
		c.Public = []string{"/healthz", "/readyz"}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Middleware authenticates every request before next sees it. Safe for
// concurrent use.
type Middleware struct {
	cfg    Config
	next   http.Handler
	signer *v4.Signer // caches derived signing keys per key and day
}

// New wraps next.
func New(cfg Config, next http.Handler) (*Middleware, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Middleware{cfg: cfg, next: next, signer: v4.NewSigner()}, nil
}

func matchPath(path string, list []string) bool {
	for _, p := range list {
		if path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) {
			return true
		}
	}
	return false
}

// ServeHTTP authenticates r and hands it to the wrapped handler.
func (m *Middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if matchPath(path, m.cfg.Public) {
		m.next.ServeHTTP(w, r)
		return
	}
	c := auth.Caller{Account: m.cfg.DefaultAccount, Root: true}
	if m.cfg.Mode == auth.ModeRequired {
		var err error
		if c, err = m.Verify(r); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				m.cfg.Logger.Error("verifying a request signature", "method", r.Method, "path", path, "err", err)
				e = &Error{Type: "ServiceException", Status: http.StatusInternalServerError, Message: "The server could not verify the request signature."}
			} else {
				m.cfg.Logger.Debug("request refused", "method", r.Method, "path", path, "type", e.Type, "msg", e.Message)
			}
			writeError(w, e)
			return
		}
	}
	if !c.Root && matchPath(path, m.cfg.RootOnly) {
		writeError(w, &Error{Type: AccessDenied, Status: http.StatusForbidden,
			Message: "User: " + c.Principal() + " is not authorized to perform: " + r.Method + " " + path + " (it needs the server's root key)"})
		return
	}
	m.next.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), c)))
}

// Verify checks r's signature and returns its caller. It reads the body to
// hash it and leaves r.Body re-readable. Errors that concern the request
// are *Error; any other error is the key store's.
func (m *Middleware) Verify(r *http.Request) (auth.Caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		q := r.URL.Query()
		if q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") {
			return auth.Caller{}, incomplete("Query-string (presigned) signatures are not supported; sign the Authorization header.")
		}
		return auth.Caller{}, &Error{Type: MissingAuthenticationToken, Status: http.StatusForbidden, Message: msgMissing}
	}
	a, err := ParseAuthorization(h)
	if err != nil {
		return auth.Caller{}, err
	}
	key, ok, err := m.cfg.Keys.LookupKey(r.Context(), a.AccessKeyID)
	if err != nil {
		return auth.Caller{}, fmt.Errorf("look up access key: %w", err)
	}
	if !ok || r.Header.Get("X-Amz-Security-Token") != "" {
		// Flint issues no session tokens: a request carrying one was
		// signed with credentials this server did not issue.
		return auth.Caller{}, &Error{Type: UnrecognizedClient, Status: http.StatusForbidden, Message: msgUnrecognized}
	}
	date := r.Header.Get("X-Amz-Date")
	if date == "" {
		return auth.Caller{}, incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	t, err := time.Parse(amzDate, date)
	if err != nil {
		return auth.Caller{}, incomplete("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\", got '" + printable(date) + "'.")
	}
	if now := m.cfg.Clock(); t.Before(now.Add(-m.cfg.MaxSkew)) {
		return auth.Caller{}, expired(t, now, m.cfg.MaxSkew)
	} else if t.After(now.Add(m.cfg.MaxSkew)) {
		return auth.Caller{}, notYetCurrent(t, now, m.cfg.MaxSkew)
	}
	switch {
	case a.Date != date[:8]:
		return auth.Caller{}, invalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" +
			a.Date + "' != '" + date[:8] + "', from '" + date + "'.")
	case a.Region != m.cfg.Region:
		return auth.Caller{}, invalidSignature("Credential should be scoped to a valid region. ")
	case a.Service != m.service(r):
		return auth.Caller{}, invalidSignature("Credential should be scoped to correct service: '" + m.service(r) + "'. ")
	case a.Terminator != "aws4_request":
		return auth.Caller{}, invalidSignature("Credential should be scoped with a valid terminator: 'aws4_request', not '" + printable(a.Terminator) + "'. ")
	case !a.signedHeader("host"):
		return auth.Caller{}, invalidSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}

	payloadHash, err := m.payloadHash(r)
	if err != nil {
		return auth.Caller{}, err
	}
	want, err := m.sign(r, &a, key, payloadHash, t)
	if err != nil {
		return auth.Caller{}, err
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.Signature)) != 1 {
		return auth.Caller{}, invalidSignature(msgMismatch)
	}
	return auth.Caller{Account: key.Account, AccessKeyID: key.AccessKeyID, Root: key.Root}, nil
}

// service is the service r must be signed for.
func (m *Middleware) service(r *http.Request) string {
	if m.cfg.ServiceFor != nil {
		if s := m.cfg.ServiceFor(r); s != "" {
			return s
		}
	}
	return m.cfg.Service
}

// payloadHash returns the hash the request's signature covers: the
// body's SHA-256 in hex, or UNSIGNED-PAYLOAD when the client said so.
// The body is buffered so the handler can read it again.
func (m *Middleware) payloadHash(r *http.Request) (string, error) {
	if r.Header.Get("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD" {
		return "UNSIGNED-PAYLOAD", nil
	}
	tooLarge := func() error { // built only when needed: this runs per request
		return &Error{Type: RequestTooLarge, Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("Request must be smaller than %d bytes.", m.cfg.MaxBody)}
	}
	if r.ContentLength > m.cfg.MaxBody {
		return "", tooLarge()
	}
	if r.Body == nil || r.Body == http.NoBody {
		return emptySHA256, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1) // +1: ReadFrom sees EOF without growing
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, m.cfg.MaxBody+1))
	if err != nil {
		return "", incomplete("Could not read the request body to verify its signature.")
	}
	if n > m.cfg.MaxBody {
		return "", tooLarge()
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// sign recomputes the signature of r as its client must have computed it:
// the same method, path, query and signed headers, signed by the v4
// signer with key's secret at time t, and returns its hex.
func (m *Middleware) sign(r *http.Request, a *Authorization, key auth.Key, payloadHash string, t time.Time) (string, error) {
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	if r.TLS != nil {
		u.Scheme = "https"
	}
	// The path exactly as it came over the wire (the client signed its
	// escaping, which Path/RawPath need not reproduce).
	if path, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(path, "/") {
		u.Opaque = "//" + r.Host + path
	}
	req := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: make(http.Header, len(a.Signed)+2)}
	for _, name := range a.Signed {
		switch name {
		case "host":
		case "content-length":
			req.ContentLength = r.ContentLength
		default:
			// A signed header the request lacks cannot be signed again:
			// the signatures then differ, as they should.
			if vs := r.Header.Values(name); len(vs) > 0 {
				req.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	creds := aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey}
	if err := m.signer.SignHTTP(r.Context(), creds, req, payloadHash, a.Service, a.Region, t); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	_, sig, ok := strings.Cut(req.Header.Get("Authorization"), "Signature=")
	if !ok {
		return "", errors.New("sign: the signer wrote no signature")
	}
	return sig, nil
}
