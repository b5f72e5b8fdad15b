package frontend

import (
	"context"
	"crypto/rand"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/metadata"
)

// Function URL configurations: Create/Get/Update/DeleteFunctionUrlConfig on
// /2021-10-31/functions/{name}/url[?Qualifier=], ListFunctionUrlConfigs on
// /2021-10-31/functions/{name}/urls. The URLs themselves are served by
// internal/funcurl, which invokes through InvokeURL.

// URLPrefix is the API date of the function URL operations.
const URLPrefix = "/2021-10-31/"

const (
	urlQualifierPattern = `((?!^[0-9]+$)^[0-9a-zA-Z-_]+$)`
	// urlTimeLayout is how Lambda writes CreationTime and LastModifiedTime.
	urlTimeLayout = "2006-01-02T15:04:05.000000Z"
)

// Lambda's function URL enumerations.
const (
	URLAuthNone      = "NONE"
	URLAuthIAM       = "AWS_IAM"
	InvokeBuffered   = "BUFFERED"
	InvokeResponseSt = "RESPONSE_STREAM"
)

// functionURLConfig is Lambda's FunctionUrlConfig (and the Create, Get and
// Update outputs, which are it with or without LastModifiedTime).
type functionURLConfig struct {
	FunctionUrl      string            `json:"FunctionUrl"`
	FunctionArn      string            `json:"FunctionArn"`
	AuthType         string            `json:"AuthType"`
	Cors             *metadata.URLCors `json:"Cors,omitempty"`
	CreationTime     string            `json:"CreationTime"`
	LastModifiedTime string            `json:"LastModifiedTime,omitempty"`
	InvokeMode       string            `json:"InvokeMode"`
}

func (h *Handler) urlOut(c *metadata.URLConfig, modified bool) functionURLConfig {
	out := functionURLConfig{FunctionUrl: h.functionURL(c.ID), FunctionArn: c.ARN(), AuthType: c.AuthType,
		Cors: c.Cors, CreationTime: c.Created.UTC().Format(urlTimeLayout), InvokeMode: c.InvokeMode}
	if out.InvokeMode == "" {
		out.InvokeMode = InvokeBuffered
	}
	if modified {
		out.LastModifiedTime = c.Modified.UTC().Format(urlTimeLayout)
	}
	return out
}

// functionURL is the URL of id, by Config.FunctionURL.
func (h *Handler) functionURL(id string) string {
	if h.cfg.FunctionURL == nil {
		return "http://" + id + ".lambda-url." + h.cfg.Region + ".localhost/"
	}
	return h.cfg.FunctionURL(id)
}

type urlRequest struct {
	AuthType   *string           `json:"AuthType"`
	Cors       *metadata.URLCors `json:"Cors"`
	InvokeMode *string           `json:"InvokeMode"`
}

// urlTarget parses the function and qualifier of a URL operation and
// checks that they exist: the qualifier is an alias or $LATEST ("" for
// none).
func (h *Handler) urlTarget(ctx context.Context, r *http.Request, rt route) (name, q string, err error) {
	ref, err := h.parseFunctionName(ctx, rt.function)
	if err != nil {
		return "", "", err
	}
	q = ref.qualifier
	if query := r.URL.Query().Get("Qualifier"); query != "" {
		if q != "" && q != query {
			return "", "", lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The derived qualifier from the function name does not match the specified qualifier.")
		}
		q = query
	}
	if q != "" && q != metadata.LatestVersion {
		if len(q) > 128 || !allNameChars(q) || lambdafn.IsDigits(q) {
			return "", "", validation("qualifier", q, false, "Member must satisfy regular expression pattern: "+urlQualifierPattern)
		}
	}
	if _, err := h.cfg.Functions.Get(ctx, h.account(ctx), ref.name, metadata.LatestVersion); err != nil {
		return "", "", err
	}
	if q != "" && q != metadata.LatestVersion {
		if _, err := h.cfg.Functions.GetAlias(ctx, h.account(ctx), ref.name, q); err != nil {
			return "", "", err
		}
	}
	return ref.name, q, nil
}

// checkURLRequest validates the members of a Create or Update body.
func checkURLRequest(req *urlRequest) error {
	if req.AuthType != nil && *req.AuthType != URLAuthNone && *req.AuthType != URLAuthIAM {
		return validation("authType", *req.AuthType, false, "Member must satisfy enum value set: [NONE, AWS_IAM]")
	}
	if req.InvokeMode != nil && *req.InvokeMode != InvokeBuffered && *req.InvokeMode != InvokeResponseSt {
		return validation("invokeMode", *req.InvokeMode, false, "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]")
	}
	c := req.Cors
	if c == nil {
		return nil
	}
	lists := []struct {
		path     string
		items    []string
		maxItems int
		maxLen   int
	}{
		{"cors.allowHeaders", c.AllowHeaders, 100, 1024},
		{"cors.exposeHeaders", c.ExposeHeaders, 100, 1024},
		{"cors.allowMethods", c.AllowMethods, 6, 6},
		{"cors.allowOrigins", c.AllowOrigins, 100, 253},
	}
	for _, l := range lists {
		if len(l.items) > l.maxItems {
			return validation(l.path, "", true, "Member must have length less than or equal to "+strconv.Itoa(l.maxItems))
		}
		for _, it := range l.items {
			if it == "" || len(it) > l.maxLen {
				return validation(l.path, it, false, "Member must have length between 1 and "+strconv.Itoa(l.maxLen))
			}
		}
	}
	if c.MaxAge < 0 || c.MaxAge > 86400 {
		return validation("cors.maxAge", strconv.Itoa(c.MaxAge), false, "Member must have value between 0 and 86400")
	}
	return nil
}

// newURLID returns a URL id as Lambda's: 32 characters of [a-z0-9].
func newURLID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func (h *Handler) createFunctionURLConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ctx := r.Context()
	body, err := readBody(r, maxConfigRequest, "CreateFunctionUrlConfig")
	if err != nil {
		return err
	}
	var req urlRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.AuthType == nil {
		return validation("authType", "null", false, "Member must not be null")
	}
	if err := checkURLRequest(&req); err != nil {
		return err
	}
	name, q, err := h.urlTarget(ctx, r, rt)
	if err != nil {
		return err
	}
	now := h.cfg.Clock()
	c := &metadata.URLConfig{ID: newURLID(), Account: h.account(ctx), Region: h.cfg.Region, FunctionName: name,
		Qualifier: q, AuthType: *req.AuthType, InvokeMode: InvokeBuffered, Cors: req.Cors, Created: now, Modified: now}
	if req.InvokeMode != nil {
		c.InvokeMode = *req.InvokeMode
	}
	if err := h.cfg.Functions.CreateURLConfig(ctx, c); err != nil {
		return err
	}
	h.log.Info("function url created", "function", name, "qualifier", q, "url", h.functionURL(c.ID), "authType", c.AuthType)
	writeJSON(w, http.StatusCreated, h.urlOut(c, false))
	return nil
}

func (h *Handler) getFunctionURLConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, q, err := h.urlTarget(r.Context(), r, rt)
	if err != nil {
		return err
	}
	c, err := h.cfg.Functions.GetURLConfig(r.Context(), h.account(r.Context()), name, q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.urlOut(c, true))
	return nil
}

func (h *Handler) updateFunctionURLConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ctx := r.Context()
	body, err := readBody(r, maxConfigRequest, "UpdateFunctionUrlConfig")
	if err != nil {
		return err
	}
	var req urlRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if err := checkURLRequest(&req); err != nil {
		return err
	}
	name, q, err := h.urlTarget(ctx, r, rt)
	if err != nil {
		return err
	}
	c, err := h.cfg.Functions.GetURLConfig(ctx, h.account(ctx), name, q)
	if err != nil {
		return err
	}
	if req.AuthType != nil {
		c.AuthType = *req.AuthType
	}
	if req.InvokeMode != nil {
		c.InvokeMode = *req.InvokeMode
	}
	if req.Cors != nil {
		c.Cors = req.Cors
	}
	c.Modified = h.cfg.Clock()
	if err := h.cfg.Functions.UpdateURLConfig(ctx, c); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.urlOut(c, true))
	return nil
}

func (h *Handler) deleteFunctionURLConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, q, err := h.urlTarget(r.Context(), r, rt)
	if err != nil {
		return err
	}
	if err := h.cfg.Functions.DeleteURLConfig(r.Context(), h.account(r.Context()), name, q); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listFunctionURLConfigs(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ctx := r.Context()
	name, err := h.unqualified(ctx, rt)
	if err != nil {
		return err
	}
	marker, maxItems, err := pageParams(r)
	if err != nil {
		return err
	}
	if maxItems > 50 {
		return validation("maxItems", strconv.Itoa(maxItems), false, "Member must have value less than or equal to 50")
	}
	if _, err := h.cfg.Functions.Get(ctx, h.account(ctx), name, metadata.LatestVersion); err != nil {
		return err
	}
	all, err := h.cfg.Functions.ListURLConfigs(ctx, h.account(ctx), name)
	if err != nil {
		return err
	}
	cs, next := page(all, func(c *metadata.URLConfig) string { return c.ID }, marker, maxItems)
	out := struct {
		FunctionUrlConfigs []functionURLConfig `json:"FunctionUrlConfigs"`
		NextMarker         string              `json:"NextMarker,omitempty"`
	}{FunctionUrlConfigs: make([]functionURLConfig, 0, len(cs)), NextMarker: next}
	for _, c := range cs {
		out.FunctionUrlConfigs = append(out.FunctionUrlConfigs, h.urlOut(c, true))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// InvokeURL runs one synchronous invocation for a function URL: it
// resolves c's qualifier (an alias picks its weighted version), checks
// that the function is Active and hands req to the Invoker. Errors are
// the Invoker's (*lambdaerr.Error for throttles) or ResourceNotFound.
func (h *Handler) InvokeURL(ctx context.Context, c *metadata.URLConfig, req invocation.Request) (*metadata.Function, invocation.Result, error) {
	fn, err := h.urlFunction(ctx, c)
	if err != nil {
		return nil, invocation.Result{}, err
	}
	res, err := h.cfg.Invoker.Invoke(ctx, fn, req)
	return fn, res, err
}

// urlFunction is the function version an invocation through c runs.
func (h *Handler) urlFunction(ctx context.Context, c *metadata.URLConfig) (*metadata.Function, error) {
	q := c.Qualifier
	if q == "" {
		q = metadata.LatestVersion
	}
	fn, alias, err := h.cfg.Functions.Resolve(ctx, c.Account, c.FunctionName, q)
	if err != nil {
		return nil, err
	}
	if alias != nil {
		if v := h.pickVersion(alias); v != fn.Version {
			if fn, err = h.cfg.Functions.Get(ctx, fn.Account, fn.Name, v); err != nil {
				return nil, err
			}
		}
	}
	if fn, err = h.waitReady(ctx, fn); err != nil {
		return nil, err
	}
	if err := checkActive(fn); err != nil {
		return nil, err
	}
	return fn, nil
}
