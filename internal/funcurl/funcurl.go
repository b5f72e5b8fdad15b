// Package funcurl serves Lambda function URLs: HTTP requests to
// http://<url-id>.lambda-url.<region>.<domain>[:port]/... on Flint's own
// listener, routed by their Host header, become payload format 2.0 events
// (event.go) for the function or alias the URL belongs to, and the
// function's answer becomes the HTTP response.
//
// The URL configurations themselves (AuthType, Cors, InvokeMode) are kept
// by the metadata store and managed through the frontend's
// Create/Get/Update/Delete/ListFunctionUrlConfigs. This package only
// serves them:
//
//	request ─► Match(Host) ─► look up the URL id ─► CORS preflight? answer it
//	        ─► AWS_IAM? verify SigV4 (Verifier) ─► 2.0 event ─► Invoker
//	        ─► map the payload (or stream it, stream.go) ─► CORS headers ─► client
//
// Errors reach the client as Lambda's URLs answer them: 403 Forbidden for
// refused signatures, 404 for unknown URLs, 413 for bodies over 6 MB, 429
// for throttles, 502 for function errors and malformed answers.
package funcurl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Lambda's AuthType and InvokeMode values.
const (
	AuthNone           = "NONE"
	AuthIAM            = "AWS_IAM"
	InvokeModeStream   = "RESPONSE_STREAM"
	InvokeModeBuffered = "BUFFERED"
)

// MaxRequestBytes is the largest request body a URL accepts (Lambda's
// synchronous payload limit).
const MaxRequestBytes = 6291456

// Lookup finds URL configurations by id. *metadata.Store implements it.
type Lookup interface {
	// LookupURL returns the configuration of URL id; an unknown id is an
	// error wrapping metadata.ErrURLNotFound.
	LookupURL(ctx context.Context, id string) (*metadata.URLConfig, error)
}

// Invoker runs one synchronous invocation through a URL configuration.
// *frontend.Handler implements it.
type Invoker interface {
	// InvokeURL resolves c's function or alias and runs req on it.
	// Throttles are *lambdaerr.Error TooManyRequestsException; function
	// errors come back in the Result.
	InvokeURL(ctx context.Context, c *metadata.URLConfig, req invocation.Request) (*metadata.Function, invocation.Result, error)
}

// Verifier checks a request's SigV4 signature and returns its caller.
// *sigv4.Middleware's Verify is one.
type Verifier func(r *http.Request) (auth.Caller, error)

// Config configures the URL handler.
type Config struct {
	// Domain is the base domain of URL hosts: <id>.lambda-url.<region>.<Domain>
	// (default "localhost", which browsers and curl resolve to loopback).
	Domain string
	Region string // default us-east-1
	Lookup Lookup
	Invoke Invoker
	// Verify checks AWS_IAM URLs' signatures; nil accepts every request
	// to them as the default account's (the server's --auth dev).
	Verify Verifier
	// DefaultAccount is the caller of AWS_IAM requests when Verify is nil.
	DefaultAccount string
	Logger         *slog.Logger           // default slog.Default()
	Clock          func() time.Time       // default time.Now
	NewID          func() (string, error) // request ids; default random UUID
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	if c.Lookup == nil || c.Invoke == nil {
		return errors.New("funcurl: Lookup and Invoke are required")
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	c.Domain = strings.ToLower(strings.Trim(c.Domain, "."))
	if strings.ContainsAny(c.Domain, "/ :") {
		return fmt.Errorf("funcurl: url domain %q must be a host name without scheme or port", c.Domain)
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.NewID == nil {
		c.NewID = newUUID
	}
	return nil
}

// Handler serves function URLs. It is safe for concurrent use.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	suffix string // ".lambda-url.<region>.<domain>"
}

// New returns a URL handler.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, log: cfg.Logger.With("component", "funcurl"),
		suffix: ".lambda-url." + cfg.Region + "." + cfg.Domain}, nil
}

// URL returns the URL of id on a listener at port ("" for none).
func (h *Handler) URL(id, port string) string {
	host := id + h.suffix
	if port != "" {
		host = net.JoinHostPort(host, port)
	}
	return "http://" + host + "/"
}

// Match reports whether host (a Host header, with or without a port) is a
// function URL's, and which id it names.
func (h *Handler) Match(host string) (id string, ok bool) {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	id, ok = strings.CutSuffix(host, h.suffix)
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// message answers with Lambda URL's error body {"Message": msg}.
func message(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if errType != "" {
		w.Header().Set("X-Amzn-ErrorType", errType)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Message": msg})
}

// ServeHTTP serves one request to a function URL. Requests whose Host is
// not a URL's get 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := h.Match(r.Host)
	if !ok {
		message(w, http.StatusNotFound, "", "Not Found")
		return
	}
	reqID, err := h.cfg.NewID()
	if err != nil {
		message(w, http.StatusInternalServerError, "", "Internal Server Error")
		return
	}
	w.Header().Set("X-Amzn-RequestId", reqID)
	c, err := h.cfg.Lookup.LookupURL(r.Context(), id)
	if err != nil {
		if errors.Is(err, metadata.ErrURLNotFound) {
			message(w, http.StatusNotFound, "", "Not Found")
			return
		}
		h.log.Error("look up function url", "id", id, "err", err)
		message(w, http.StatusInternalServerError, "", "Internal Server Error")
		return
	}
	if preflight(w, r, c.Cors) {
		return
	}
	caller, ok := h.authorize(w, r, c)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		message(w, http.StatusBadRequest, "", "Could not read the request body")
		return
	}
	if len(body) > MaxRequestBytes {
		message(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than "+strconv.Itoa(MaxRequestBytes)+" bytes for the InvokeFunction operation")
		return
	}
	domain := r.Host
	if hh, _, err := net.SplitHostPort(domain); err == nil {
		domain = hh
	}
	ev := newEvent(r, body, c.Account, id, domain, reqID, h.cfg.Clock())
	if caller != nil {
		ev.RequestContext.AccountID = caller.Account
		ev.RequestContext.Authorizer = &Authorizer{IAM: &IAMAuthorizer{AccessKey: caller.AccessKeyID, AccountID: caller.Account,
			CallerID: caller.Account, UserARN: caller.Principal(), UserID: caller.Account}}
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		message(w, http.StatusInternalServerError, "", "Internal Server Error")
		return
	}
	if len(payload) > MaxRequestBytes {
		message(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than "+strconv.Itoa(MaxRequestBytes)+" bytes for the InvokeFunction operation")
		return
	}
	req := invocation.Request{RequestID: reqID, Payload: payload, TraceID: r.Header.Get("X-Amzn-Trace-Id")}
	if si, ok := h.cfg.Invoke.(StreamInvoker); ok && c.InvokeMode == InvokeModeStream {
		h.serveStream(w, r, si, c, req)
		return
	}
	fn, res, err := h.cfg.Invoke.InvokeURL(r.Context(), c, req)
	if err != nil {
		h.invokeError(w, c, reqID, err)
		return
	}
	corsHeaders(w.Header(), r, c.Cors)
	if res.FunctionError != "" {
		h.log.Debug("function url: function error", "requestId", reqID, "function", fn.Name, "errorType", res.ErrorType)
		message(w, http.StatusBadGateway, "", "Internal Server Error")
		return
	}
	out, err := mapResponse(res.Payload)
	if err != nil {
		h.log.Info("function url: malformed response", "requestId", reqID, "function", fn.Name, "err", err)
		message(w, http.StatusBadGateway, "", "Internal Server Error")
		return
	}
	hdr := w.Header()
	for k, vs := range out.header {
		if corsOwned(k, c.Cors) {
			continue // the URL's CORS settings win over the function's
		}
		hdr[k] = vs
	}
	hdr.Set("Content-Length", strconv.Itoa(len(out.body)))
	w.WriteHeader(out.status)
	_, _ = w.Write(out.body)
}

// invokeError answers an invocation that did not run.
func (h *Handler) invokeError(w http.ResponseWriter, c *metadata.URLConfig, reqID string, err error) {
	le := lambdaerr.As(err)
	switch {
	case le.Type == lambdaerr.TooManyRequests:
		if le.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(le.RetryAfterSeconds))
		}
		message(w, http.StatusTooManyRequests, lambdaerr.TooManyRequests, "Rate Exceeded.")
	case le.Type == lambdaerr.ResourceNotFound:
		message(w, http.StatusNotFound, "", "Not Found")
	case le.Status() < 500:
		h.log.Info("function url: invocation refused", "requestId", reqID, "function", c.FunctionName, "type", le.Type, "msg", le.Message)
		message(w, le.Status(), le.Type, le.Message)
	default:
		h.log.Error("function url: invocation failed", "requestId", reqID, "function", c.FunctionName, "err", err)
		message(w, http.StatusBadGateway, "", "Internal Server Error")
	}
}

// authorize enforces c's AuthType. For AWS_IAM it returns the caller; it
// answers the client itself and reports false when the request is refused.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, c *metadata.URLConfig) (*auth.Caller, bool) {
	if c.AuthType != AuthIAM {
		return nil, true
	}
	if h.cfg.Verify == nil {
		return &auth.Caller{Account: h.cfg.DefaultAccount, Root: true}, true
	}
	caller, err := h.cfg.Verify(r)
	if err != nil {
		h.log.Debug("function url: signature refused", "id", c.ID, "err", err)
		message(w, http.StatusForbidden, "AccessDeniedException", "Forbidden")
		return nil, false
	}
	if caller.Account != c.Account && !h.grants(r.Context(), c, caller.Account) {
		message(w, http.StatusForbidden, "AccessDeniedException", "Forbidden")
		return nil, false
	}
	return &caller, true
}

// grants reports whether the resource policy of c's function (or alias)
// lets account invoke it.
func (h *Handler) grants(ctx context.Context, c *metadata.URLConfig, account string) bool {
	pl, ok := h.cfg.Lookup.(interface {
		Resolve(ctx context.Context, account, name, qualifier string) (*metadata.Function, *metadata.Alias, error)
	})
	if !ok {
		return false
	}
	q := c.Qualifier
	if q == "" {
		q = metadata.LatestVersion
	}
	fn, alias, err := pl.Resolve(ctx, c.Account, c.FunctionName, q)
	if err != nil {
		return false
	}
	p := fn.Policy
	if alias != nil {
		p = alias.Policy
	}
	return p.AllowsInvoke(account)
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("funcurl: random id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32], nil
}
