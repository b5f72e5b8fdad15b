package frontend

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Response headers in their canonical form (X-Amzn-RequestId is
// X-Amzn-Requestid), as the header map holds them: the invoke path sets
// them directly.
const (
	headerRequestID       = "X-Amzn-Requestid"
	headerExecutedVersion = "X-Amz-Executed-Version"
	headerFunctionError   = "X-Amz-Function-Error"
	headerLogResult       = "X-Amz-Log-Result"
)

// contentJSON is a shared Content-Type value (never modified: Header.Set
// replaces a value, Add appends to a full slice).
var contentJSON = []string{"application/json"}

// maxLogTail is how much of the end of an invocation's log X-Amz-Log-Result
// carries.
const maxLogTail = 4096

// maxClientContext is Lambda's limit on the base64 X-Amz-Client-Context.
const maxClientContext = 3583

// invoke serves Invoke: RequestResponse (default) runs the function and
// answers with its payload, Event hands it to the async queue (202),
// DryRun only checks that the function exists and may be invoked (204).
func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	invType := r.Header.Get("X-Amz-Invocation-Type")
	switch invType {
	case "":
		invType = "RequestResponse"
	case "RequestResponse", "Event", "DryRun":
	default:
		return validation("invocationType", invType, false, "Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
	}
	logType := r.Header.Get("X-Amz-Log-Type")
	switch logType {
	case "", "None", "Tail":
	default:
		return validation("logType", logType, false, "Member must satisfy enum value set: [None, Tail]")
	}
	limit := int64(maxSyncPayload)
	if invType == "Event" {
		limit = maxAsyncPayload
	}
	payload, err := readBody(r, limit, "InvokeFunction")
	if err != nil {
		return err
	}
	if err := checkPayload(payload); err != nil {
		return err
	}
	// The runtime gets the client context decoded, as JSON.
	var clientContext string
	if b64 := r.Header.Get("X-Amz-Client-Context"); b64 != "" {
		if len(b64) > maxClientContext {
			return validation("clientContext", "", true, "Member must have length less than or equal to "+strconv.Itoa(maxClientContext))
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || !json.Valid(raw) {
			return lambdaerr.New(lambdaerr.InvalidRequestContent, "Client context must be a valid Base64-encoded JSON object.")
		}
		clientContext = string(raw)
	}
	fn, alias, err := h.invokeTarget(r, rt)
	if err != nil {
		return err
	}
	given := givenQualifier(r, rt)
	arn := invokedARN(fn, alias, given)
	if alias != nil {
		if v := h.pickVersion(alias); v != fn.Version {
			if fn, err = h.cfg.Functions.Get(r.Context(), fn.Account, fn.Name, v); err != nil {
				return err
			}
		}
	}
	if fn, err = h.waitReady(r.Context(), fn); err != nil {
		return err
	}
	if err := checkActive(fn); err != nil {
		return err
	}
	req := invocation.Request{
		RequestID:          reqID,
		Payload:            payload,
		ClientContext:      clientContext,
		TraceID:            r.Header.Get("X-Amzn-Trace-Id"),
		Qualifier:          given,
		InvokedFunctionARN: arn,
	}
	if req.TraceID == "" {
		req.TraceID = h.newTraceID()
	}
	switch invType {
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
		return nil
	case "Event":
		if h.cfg.Async == nil {
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"Asynchronous invocation (InvocationType Event) is not enabled on this Flint server.")
		}
		if err := h.cfg.Async.Enqueue(r.Context(), fn, req); err != nil {
			return err
		}
		h.log.Debug("invocation queued", "requestId", reqID, "function", fn.Name, "version", fn.Version)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	res, err := h.cfg.Invoker.Invoke(r.Context(), fn, req)
	if err != nil {
		return err
	}
	version := res.ExecutedVersion
	if version == "" {
		version = fn.Version
	}
	// Canonical keys set directly, the values in one allocation: this
	// runs on every invocation (Header.Set would canonicalise each key
	// and allocate each value).
	v := [...]string{version, strconv.Itoa(len(res.Payload)), res.FunctionError, ""}
	hdr := w.Header()
	hdr[headerExecutedVersion] = v[0:1:1]
	if res.FunctionError != "" {
		hdr[headerFunctionError] = v[2:3:3]
	}
	if logType == "Tail" {
		tail := res.Log
		if len(tail) > maxLogTail {
			tail = tail[len(tail)-maxLogTail:]
		}
		v[3] = base64.StdEncoding.EncodeToString(tail)
		hdr[headerLogResult] = v[3:4:4]
	}
	hdr["Content-Type"] = contentJSON
	hdr["Content-Length"] = v[1:2:2]
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Payload)
	// Attributes are passed at the call, not bound with With: a With per
	// invocation allocates even when debug logging is off.
	h.log.Debug("invocation done", "requestId", reqID, "function", fn.Name, "version", fn.Version, "functionError", res.FunctionError, "sandbox", res.SandboxID, "coldStart", res.ColdStart, "duration", res.Duration)
	return nil
}

// givenQualifier is the qualifier an invocation names, as given ("" when
// unqualified): the Qualifier parameter, else the FunctionName's (the
// target lookup has checked that they agree).
func givenQualifier(r *http.Request, rt route) string {
	if q := queryValue(r, "Qualifier"); q != "" {
		return q
	}
	switch strings.Count(rt.function, ":") {
	case 1, 3, 7: // name:q, account:function:name:q, an ARN with :q
		return rt.function[strings.LastIndexByte(rt.function, ':')+1:]
	}
	return ""
}

// invokedARN is the ARN an invocation was made by: the alias's when
// through one, else fn's function ARN qualified as given.
func invokedARN(fn *metadata.Function, alias *metadata.Alias, given string) string {
	if alias != nil {
		return alias.ARN()
	}
	if given == "" {
		return fn.ARN()
	}
	return fn.ARN() + ":" + given
}

// checkPayload refuses a payload that is not JSON (empty is allowed).
func checkPayload(payload []byte) error {
	if t := bytes.TrimSpace(payload); len(t) > 0 && !json.Valid(t) {
		var v any
		perr := json.Unmarshal(t, &v)
		return lambdaerr.New(lambdaerr.InvalidRequestContent,
			"Could not parse request body into json: Could not parse payload into json: %s", jsonProblem(perr))
	}
	return nil
}

// checkActive refuses invocations of a function version that is not
// Active (Pending while its code is prepared, Failed), as Lambda does.
func checkActive(fn *metadata.Function) error {
	if fn.State != "" && fn.State != "Active" {
		return lambdaerr.New(lambdaerr.ResourceConflict,
			"The operation cannot be performed at this time. The function is currently in the following state: %s", fn.State)
	}
	return nil
}

// newTraceID returns an X-Ray style trace header for an invocation that
// came without one: Root=1-<epoch hex>-<96 random bits>;Sampled=0.
func (h *Handler) newTraceID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])     // crypto/rand.Read never fails on Linux
	buf := make([]byte, 0, 64) // one allocation with the string below
	buf = append(buf, "Root=1-"...)
	buf = strconv.AppendInt(buf, h.cfg.Clock().Unix(), 16)
	buf = append(buf, '-')
	buf = hex.AppendEncode(buf, b[:])
	buf = append(buf, ";Sampled=0"...)
	return string(buf)
}
