// Package frontend serves Lambda's REST API (functions, versions, aliases,
// invocations, concurrency and account settings; see Prefixes) over HTTP,
// so the AWS CLI and SDKs pointed at Flint with --endpoint-url work
// unchanged.
//
// The frontend validates requests the way Lambda does, keeps function
// configurations in the metadata store, hands zips to the code store and
// invocations to the worker manager. Errors from anywhere are translated
// once, here, into Lambda's status code, X-Amzn-ErrorType header and JSON
// body (see errors.go). Signatures are verified in front of it (internal/auth/sigv4);
// every request acts on its caller's account (auth.AccountOf), Config.Account
// when it carries none.
package frontend

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/layers"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/writegate"
)

// APIPrefix is the path prefix of the 2015-03-31 routes (functions,
// versions, aliases, invocations).
const APIPrefix = "/2015-03-31/"

// CodePackage describes a stored deployment package (digest, CodeSha256,
// CodeSize).
type CodePackage = codestore.Package

// CodeStore stores deployment packages.
type CodeStore interface {
	// Put validates and stores a zip. A zip that cannot be opened is a
	// *lambdaerr.Error (InvalidParameterValueException).
	Put(ctx context.Context, zip []byte) (CodePackage, error)
}

// Invoker runs synchronous invocations on sandboxes.
type Invoker interface {
	// Invoke runs one invocation of fn and returns its result. Errors that
	// are Lambda-visible are *lambdaerr.Error (e.g. TooManyRequests).
	Invoke(ctx context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error)
	// Retire drops every sandbox of a function, so the next invocation
	// gets a sandbox built from the current code and configuration. An
	// error is logged; the change that caused the retirement stands.
	Retire(ctx context.Context, account, name string) error
}

// VersionRetirer is an optional ability of an Invoker (checked at run
// time): retiring the sandboxes of one version only. After an update of
// $LATEST the frontend retires $LATEST's sandboxes this way, leaving the
// published versions' sandboxes warm; an Invoker without it gets Retire.
type VersionRetirer interface {
	RetireVersion(ctx context.Context, account, name, version string) error
}

// ConcurrencyController enforces concurrency settings that the frontend
// stores; *workermanager.Manager implements it. Its methods are safe for
// concurrent use and do not block on I/O.
type ConcurrencyController interface {
	// SetReservedConcurrency / ClearReservedConcurrency set or remove a
	// function's reserved concurrency (0: every invocation throttled).
	SetReservedConcurrency(account, name string, n int)
	ClearReservedConcurrency(account, name string)
	// SetProvisionedConcurrency keeps n initialised sandboxes of the
	// version fn (in the background); ClearProvisionedConcurrency stops.
	SetProvisionedConcurrency(fn *metadata.Function, n int) error
	ClearProvisionedConcurrency(fn *metadata.Function)
	// ProvisionedConcurrency reports progress; ok is false when the
	// controller has no request for fn's version.
	ProvisionedConcurrency(fn *metadata.Function) (st concurrency.ProvisionedStatus, ok bool)
}

// AsyncQueue accepts asynchronous (Event) invocations.
type AsyncQueue interface {
	// Enqueue durably accepts an invocation to be run later.
	Enqueue(ctx context.Context, fn *metadata.Function, req invocation.Request) error
}

// RuntimeSet lists the runtimes this host offers.
type RuntimeSet interface {
	// Names returns runtime identifiers such as "provided.al2023".
	Names() []string
}

// LogPurger removes a function's logs.
type LogPurger interface {
	Purge(ctx context.Context, account, function string) error
}

// Config configures the frontend.
type Config struct {
	Region  string // default "us-east-1"
	Account string // default "000000000000"

	Functions *metadata.Store // required
	Code      CodeStore       // required
	Invoker   Invoker         // required
	Async     AsyncQueue      // optional: nil answers Event invocations with an error
	Runtimes  RuntimeSet      // required
	Logs      LogPurger       // optional
	// Preparer readies a function's code before it is Active (state.go).
	// Optional: without it a change is ready as soon as it is stored (the
	// state still passes through Pending / InProgress).
	Preparer Preparer
	// EventConfigs keeps event invoke configs (the 2019-09-25 routes).
	// Optional: when nil and Async implements EventConfigs, Async is
	// used; with neither, those operations are refused.
	EventConfigs EventConfigs
	// EventSourceMappings serves Lambda's event source mapping routes
	// (/2015-03-31/event-source-mappings…, internal/esm); nil answers
	// them as unknown operations.
	EventSourceMappings http.Handler
	// Layers keeps layer versions. Optional: nil answers the layer
	// operations and functions' Layers with "not supported".
	Layers *layers.Store
	// CodeURLs makes GetFunction's Code.Location and GetLayerVersion's
	// Content.Location. Optional: nil leaves them out.
	CodeURLs CodeLinker
	// MaxUnzippedBytes bounds a function's code and layers together,
	// unzipped (default codestore.DefaultMaxUnzippedBytes, Lambda's 250 MB).
	MaxUnzippedBytes int64
	// Concurrency enforces reserved and provisioned concurrency. Optional:
	// when nil and Invoker implements ConcurrencyController, Invoker is
	// used; with neither, reserved concurrency is stored and reported but
	// not enforced, and provisioned concurrency is refused.
	Concurrency ConcurrencyController

	// ConcurrentExecutions is the account's concurrency limit as
	// GetAccountSettings reports it and reservations are checked against.
	// Default: the controller's AccountConcurrency() when it has that
	// method (*workermanager.Manager does), else 1000.
	ConcurrentExecutions int
	// MinUnreserved is the part of ConcurrentExecutions that reservations
	// must leave to the other functions (default 100, as Lambda; capped at
	// ConcurrentExecutions).
	MinUnreserved int
	// FunctionURL makes the URL of a function URL id, e.g.
	// "http://<id>.lambda-url.us-east-1.localhost:9000/" (default: that
	// form without a port).
	FunctionURL func(id string) string
	// Rand returns a uniform number in [0, 1); it picks the version of a
	// weighted alias (default math/rand/v2.Float64).
	Rand func() float64

	// Gate, when set, is asked before a request that stores something
	// (POST and PUT, except synchronous invocations, which store
	// nothing; asynchronous ones ask through Async): while the backbone
	// cannot take writes they are refused at once. Reads, deletes and
	// synchronous invocations are still served.
	Gate writegate.Gate

	Logger *slog.Logger           // default slog.Default()
	Clock  func() time.Time       // default time.Now
	NewID  func() (string, error) // request and revision ids; default random UUID v4
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Account == "" {
		c.Account = "000000000000"
	}
	if len(c.Account) != 12 || strings.Trim(c.Account, "0123456789") != "" {
		return errors.New("frontend: account must be a 12-digit id")
	}
	if c.Functions == nil || c.Code == nil || c.Invoker == nil || c.Runtimes == nil {
		return errors.New("frontend: Functions, Code, Invoker and Runtimes are required")
	}
	if c.ConcurrentExecutions < 0 || c.MinUnreserved < 0 {
		return errors.New("frontend: negative concurrency limit")
	}
	if c.EventConfigs == nil {
		if ec, ok := c.Async.(EventConfigs); ok {
			c.EventConfigs = ec
		}
	}
	if c.Concurrency == nil {
		if cc, ok := c.Invoker.(ConcurrencyController); ok {
			c.Concurrency = cc
		}
	}
	if c.ConcurrentExecutions == 0 {
		c.ConcurrentExecutions = concurrency.DefaultAccountLimit
		if l, ok := c.Concurrency.(interface{ AccountConcurrency() int }); ok && l.AccountConcurrency() > 0 {
			c.ConcurrentExecutions = l.AccountConcurrency()
		}
	}
	if c.MinUnreserved == 0 {
		c.MinUnreserved = concurrency.DefaultMinUnreserved
	}
	c.MinUnreserved = min(c.MinUnreserved, c.ConcurrentExecutions)
	if c.Rand == nil {
		c.Rand = rand.Float64
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

// Handler is the Lambda API as an http.Handler. It is safe for concurrent
// use and holds no state of its own beyond its configuration and the
// background preparations of changed functions (state.go); Close stops
// those.
type Handler struct {
	cfg Config
	log *slog.Logger

	// bg counts background preparations (state.go); lifetime bounds them
	// and is canceled by Close (stop).
	bg       sync.WaitGroup
	lifetime context.Context
	stop     context.CancelFunc
}

// New returns the API handler.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "frontend")}
	h.lifetime, h.stop = context.WithCancel(context.Background())
	return h, nil
}

// route is one parsed request path.
type route struct {
	function string // unescaped {FunctionName} label, "" for the collection
	// sub is "", "configuration", "code", "invocations", "versions",
	// "aliases", "concurrency", "provisioned-concurrency",
	// "event-invoke-config", or "account-settings" (with function "").
	sub   string
	alias string // unescaped {Name} of aliases/{Name}
	list  bool   // event-invoke-config/list
	sid   string // unescaped {StatementId} of policy/{StatementId}
}

// Prefixes are the path prefixes of Lambda's API that the handler serves
// (Lambda dates its operations). The server mounts the Handler on "/", so
// that any other path, too, is answered in Lambda's error format.
//
//	/2015-03-31/  functions, versions, aliases, invocations
//	/2016-08-19/  account-settings (GetAccountSettings)
//	/2017-03-31/  tags/{ARN} (TagResource, UntagResource, ListTags)
//	/2017-10-31/  functions/{name}/concurrency (Put/DeleteFunctionConcurrency)
//	/2019-09-25/  functions/{name}/event-invoke-config[/list]
//	/2019-09-30/  functions/{name}/concurrency (GetFunctionConcurrency),
//	              functions/{name}/provisioned-concurrency
//	/2018-10-31/  layers (layers.go)
//	/2021-10-31/  functions/{name}/url, functions/{name}/urls (urls.go)
//	/2021-11-15/  functions/{name}/response-streaming-invocations (stream.go)
//	/2014-11-13/  functions/{name}/invoke-async (InvokeAsync)
//	/2020-06-30/  functions/{name}/code-signing-config
//	/2021-07-20/  functions/{name}/runtime-management-config
//	/2024-08-31/  functions/{name}/recursion-config
//
// Lambda operations Flint does not implement are answered from the table
// in unsupported.go; any other path is UnknownOperationException.
var Prefixes = []string{"/2014-11-13/", APIPrefix, "/2016-08-19/", "/2017-03-31/", "/2017-10-31/", LayersPrefix, "/2019-09-25/", "/2019-09-30/",
	"/2020-06-30/", "/2021-07-20/", URLPrefix, StreamPrefix, "/2024-08-31/"}

// subsOf lists, per API date, the sub-resources of a function it serves.
var subsOf = map[string]map[string]bool{
	"2015-03-31": {"": true, "configuration": true, "code": true, "invocations": true, "versions": true, "aliases": true, "policy": true},
	"2014-11-13": {"invoke-async": true},
	"2017-10-31": {"concurrency": true},
	"2019-09-25": {"event-invoke-config": true},
	"2019-09-30": {"concurrency": true, "provisioned-concurrency": true},
	"2020-06-30": {"code-signing-config": true},
	"2021-07-20": {"runtime-management-config": true},
	"2024-08-31": {"recursion-config": true},
	"2021-10-31": {"url": true, "urls": true},
	"2021-11-15": {"response-streaming-invocations": true},
}

// eventSourceMappings is the collection path of Lambda's event source
// mapping API, served by Config.EventSourceMappings.
const eventSourceMappings = APIPrefix + "event-source-mappings"

// parsePath splits an escaped request path into a route. ok is false for
// paths outside the API.
func parsePath(escaped string) (rt route, ok bool) {
	if escaped == "/2016-08-19/account-settings" || escaped == "/2016-08-19/account-settings/" {
		return route{sub: "account-settings"}, true
	}
	if rt, ok := parseTagsPath(escaped); ok {
		return rt, true
	}
	if len(escaped) < 12 || escaped[0] != '/' || escaped[11] != '/' {
		return route{}, false
	}
	subs := subsOf[escaped[1:11]]
	if subs == nil {
		return route{}, false
	}
	rest, found := strings.CutPrefix(escaped[11:], "/functions")
	if !found {
		return route{}, false
	}
	if rest == "" || rest == "/" {
		return route{}, subs[""]
	}
	if rest[0] != '/' {
		return route{}, false
	}
	// Split into at most three segments, on the stack (every request).
	var buf [3]string
	segs := buf[:0]
	for p := strings.TrimSuffix(rest[1:], "/"); ; {
		if len(segs) == len(buf) {
			return route{}, false
		}
		seg, tail, more := strings.Cut(p, "/")
		segs = append(segs, seg)
		if !more {
			break
		}
		p = tail
	}
	if segs[0] == "" {
		return route{}, false
	}
	name, err := url.PathUnescape(segs[0])
	if err != nil || name == "" {
		return route{}, false
	}
	rt.function = name
	if len(segs) >= 2 {
		rt.sub = segs[1]
	}
	if !subs[rt.sub] {
		return route{}, false
	}
	if len(segs) == 3 && rt.sub == "event-invoke-config" {
		rt.list = segs[2] == "list"
		return rt, rt.list
	}
	if len(segs) == 3 {
		if rt.sub != "aliases" && rt.sub != "policy" {
			return route{}, false
		}
		last, err := url.PathUnescape(segs[2])
		if err != nil || last == "" {
			return route{}, false
		}
		if rt.sub == "policy" {
			rt.sid = last
		} else {
			rt.alias = last
		}
	}
	return rt, true
}

type handlerFunc = func(http.ResponseWriter, *http.Request, string, route) error

// handlers maps a route's shape to its operations by method.
func (h *Handler) handlers(rt route) map[string]handlerFunc {
	switch {
	case rt.sub == "account-settings":
		return map[string]handlerFunc{http.MethodGet: h.getAccountSettings}
	case rt.function == "":
		return map[string]handlerFunc{http.MethodGet: h.listFunctions, http.MethodPost: h.createFunction}
	case rt.sub == "":
		return map[string]handlerFunc{http.MethodGet: h.getFunction, http.MethodDelete: h.deleteFunction}
	case rt.sub == "configuration":
		return map[string]handlerFunc{http.MethodGet: h.getFunctionConfiguration, http.MethodPut: h.updateFunctionConfiguration}
	case rt.sub == "code":
		return map[string]handlerFunc{http.MethodPut: h.updateFunctionCode}
	case rt.sub == "invocations":
		return map[string]handlerFunc{http.MethodPost: h.invoke}
	case rt.sub == "versions":
		return map[string]handlerFunc{http.MethodGet: h.listVersions, http.MethodPost: h.publishVersion}
	case rt.sub == "aliases" && rt.alias == "":
		return map[string]handlerFunc{http.MethodGet: h.listAliases, http.MethodPost: h.createAlias}
	case rt.sub == "aliases":
		return map[string]handlerFunc{http.MethodGet: h.getAlias, http.MethodPut: h.updateAlias, http.MethodDelete: h.deleteAlias}
	case rt.sub == "policy" && rt.sid == "":
		return map[string]handlerFunc{http.MethodGet: h.getPolicy, http.MethodPost: h.addPermission}
	case rt.sub == "policy":
		return map[string]handlerFunc{http.MethodDelete: h.removePermission}
	case rt.sub == "concurrency":
		return map[string]handlerFunc{http.MethodGet: h.getFunctionConcurrency, http.MethodPut: h.putFunctionConcurrency,
			http.MethodDelete: h.deleteFunctionConcurrency}
	case rt.sub == "invoke-async":
		return map[string]handlerFunc{http.MethodPost: h.invokeAsync}
	case rt.sub == "code-signing-config":
		return map[string]handlerFunc{http.MethodGet: h.getFunctionCodeSigningConfig, http.MethodDelete: h.deleteFunctionCodeSigningConfig,
			http.MethodPut: h.putFunctionCodeSigningConfig}
	case rt.sub == "runtime-management-config":
		return map[string]handlerFunc{http.MethodGet: h.getRuntimeManagementConfig, http.MethodPut: h.putRuntimeManagementConfig}
	case rt.sub == "recursion-config":
		return map[string]handlerFunc{http.MethodGet: h.getFunctionRecursionConfig, http.MethodPut: h.putFunctionRecursionConfig}
	case rt.sub == "tags":
		return map[string]handlerFunc{http.MethodGet: h.listTags, http.MethodPost: h.tagResource, http.MethodDelete: h.untagResource}
	case rt.sub == "event-invoke-config" && rt.list:
		return map[string]handlerFunc{http.MethodGet: h.listEventConfigs}
	case rt.sub == "event-invoke-config":
		return map[string]handlerFunc{http.MethodGet: h.getEventConfig, http.MethodPut: h.putEventConfig(false),
			http.MethodPost: h.putEventConfig(true), http.MethodDelete: h.deleteEventConfig}
	case rt.sub == "url":
		return map[string]handlerFunc{http.MethodGet: h.getFunctionURLConfig, http.MethodPost: h.createFunctionURLConfig,
			http.MethodPut: h.updateFunctionURLConfig, http.MethodDelete: h.deleteFunctionURLConfig}
	case rt.sub == "response-streaming-invocations":
		return map[string]handlerFunc{http.MethodPost: h.invokeWithResponseStream}
	case rt.sub == "urls":
		return map[string]handlerFunc{http.MethodGet: h.listFunctionURLConfigs}
	case rt.sub == "provisioned-concurrency":
		return map[string]handlerFunc{http.MethodGet: h.getProvisionedConcurrency, http.MethodPut: h.putProvisionedConcurrency,
			http.MethodDelete: h.deleteProvisionedConcurrency}
	}
	return nil
}

// ServeHTTP routes one API request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID, err := h.cfg.NewID()
	if err != nil {
		h.writeError(w, r, reqID, err)
		return
	}
	w.Header()[headerRequestID] = []string{reqID}
	if p := r.URL.Path; h.cfg.EventSourceMappings != nil && (p == eventSourceMappings || strings.HasPrefix(p, eventSourceMappings+"/")) {
		h.cfg.EventSourceMappings.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, LayersPrefix) {
		h.serveLayers(w, r, reqID)
		return
	}
	rt, ok := parsePath(r.URL.EscapedPath())
	if !ok {
		if u, known := findUnsupported(r.Method, r.URL.EscapedPath()); known {
			if err := h.serveUnsupported(w, u); err != nil {
				h.writeError(w, r, reqID, err)
			}
			return
		}
		h.writeError(w, r, reqID, &apiError{typ: unknownOperation, status: http.StatusNotFound,
			msg: "Unknown operation " + r.Method + " " + r.URL.Path})
		return
	}
	var handle handlerFunc
	if r.Method == http.MethodPost && rt.function != "" && rt.sub == "invocations" {
		handle = h.invoke // the hot path: no route table built per call
	}
	var ops map[string]handlerFunc
	if handle == nil {
		ops = h.handlers(rt)
		handle = ops[r.Method]
	}
	if handle == nil {
		var methods []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			if ops[m] != nil {
				methods = append(methods, m)
			}
		}
		allowed := strings.Join(methods, ", ")
		w.Header().Set("Allow", allowed)
		h.writeError(w, r, reqID, &apiError{typ: methodNotAllowed, status: http.StatusMethodNotAllowed,
			msg: "Method " + r.Method + " is not allowed on " + r.URL.Path + " (allowed: " + allowed + ")"})
		return
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPut) && rt.sub != "invocations" {
		if err := writegate.Check(h.cfg.Gate, writegate.Data); err != nil {
			h.writeError(w, r, reqID, err)
			return
		}
	}
	if err := handle(w, r, reqID, rt); err != nil {
		var foreign *foreignARN
		if errors.As(err, &foreign) && foreign.owner != "" {
			err = lambdaerr.New(lambdaerr.AccessDenied, "%s", foreign.denied(iamAction(r.Method, rt)))
		}
		h.writeError(w, r, reqID, err)
	}
}
