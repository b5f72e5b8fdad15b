package frontend

import (
	"net/http"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Operations infrastructure-as-code tools read for every function, even
// when the feature is unused: code signing (Flint never has a config),
// runtime management and recursion (stored and reported with Lambda's
// shapes), and the legacy InvokeAsync.

// getFunctionCodeSigningConfig serves GetFunctionCodeSigningConfig: no
// function of Flint has a code signing config.
func (h *Handler) getFunctionCodeSigningConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"CodeSigningConfigArn": "", "FunctionName": name})
	return nil
}

// deleteFunctionCodeSigningConfig serves DeleteFunctionCodeSigningConfig:
// there is nothing to remove.
func (h *Handler) deleteFunctionCodeSigningConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// putFunctionCodeSigningConfig serves PutFunctionCodeSigningConfig from
// the unsupported table: Flint has no code signing configs to attach.
func (h *Handler) putFunctionCodeSigningConfig(w http.ResponseWriter, r *http.Request, _ string, _ route) error {
	u, _ := findUnsupported(http.MethodPut, "/2020-06-30/functions/*/code-signing-config")
	return h.serveUnsupported(w, u)
}

// runtimeManagement is the stored runtime management setting of a version.
type runtimeManagement struct {
	UpdateRuntimeOn string `json:"updateRuntimeOn"`
}

// qualifiedVersion resolves FunctionName + Qualifier to $LATEST or a
// published version (aliases are not accepted, as in Lambda's runtime
// management API).
func (h *Handler) qualifiedVersion(r *http.Request, rt route) (*metadata.Function, string, error) {
	ref, err := h.parseFunctionName(r.Context(), rt.function)
	if err != nil {
		return nil, "", err
	}
	q, err := h.resolveQualifier(ref, r.URL.Query().Get("Qualifier"))
	if err != nil {
		return nil, "", err
	}
	if q != metadata.LatestVersion && !metadata.IsVersionNumber(q) {
		return nil, "", lambdaerr.New(lambdaerr.InvalidParameterValue, "The qualifier %s is invalid here: use $LATEST or a version number.", q)
	}
	f, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), ref.name, q)
	return f, q, err
}

func (h *Handler) getRuntimeManagementConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	f, q, err := h.qualifiedVersion(r, rt)
	if err != nil {
		return err
	}
	rm := runtimeManagement{UpdateRuntimeOn: "Auto"}
	if _, err := h.cfg.Functions.GetSetting(r.Context(), h.account(r.Context()), f.Name, "runtime-management", q, &rm); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"UpdateRuntimeOn": rm.UpdateRuntimeOn, "FunctionArn": h.arn(r.Context(), f.Name, q)})
	return nil
}

// putRuntimeManagementConfig serves PutRuntimeManagementConfig. Auto and
// FunctionUpdate are accepted (Flint's runtimes are the host's; a function
// always runs on the current one); Manual, which pins a runtime version,
// is refused.
func (h *Handler) putRuntimeManagementConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	f, q, err := h.qualifiedVersion(r, rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "PutRuntimeManagementConfig")
	if err != nil {
		return err
	}
	var req struct {
		UpdateRuntimeOn   *string `json:"UpdateRuntimeOn"`
		RuntimeVersionArn string  `json:"RuntimeVersionArn"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	switch {
	case req.UpdateRuntimeOn == nil:
		return validation("updateRuntimeOn", "null", false, "Member must not be null")
	case *req.UpdateRuntimeOn == "Manual":
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"UpdateRuntimeOn Manual is not supported by Flint: runtimes are those of the Flint host and cannot be pinned to a runtime version.")
	case *req.UpdateRuntimeOn != "Auto" && *req.UpdateRuntimeOn != "FunctionUpdate":
		return validation("updateRuntimeOn", *req.UpdateRuntimeOn, false, "Member must satisfy enum value set: [Auto, Manual, FunctionUpdate]")
	case req.RuntimeVersionArn != "":
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "RuntimeVersionArn can only be given with UpdateRuntimeOn Manual.")
	}
	rm := runtimeManagement{UpdateRuntimeOn: *req.UpdateRuntimeOn}
	if err := h.cfg.Functions.PutSetting(r.Context(), h.account(r.Context()), f.Name, "runtime-management", q, rm); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"UpdateRuntimeOn": rm.UpdateRuntimeOn, "FunctionArn": h.arn(r.Context(), f.Name, q)})
	return nil
}

// recursion is the stored recursive loop setting of a function.
type recursion struct {
	RecursiveLoop string `json:"recursiveLoop"`
}

func (h *Handler) getFunctionRecursionConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion); err != nil {
		return err
	}
	rc := recursion{RecursiveLoop: "Terminate"}
	if _, err := h.cfg.Functions.GetSetting(r.Context(), h.account(r.Context()), name, "recursion", "", &rc); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"RecursiveLoop": rc.RecursiveLoop})
	return nil
}

// putFunctionRecursionConfig serves PutFunctionRecursionConfig: the
// setting is stored and reported. Flint does not trace invocation chains,
// so it neither detects nor stops recursive loops whatever the setting.
func (h *Handler) putFunctionRecursionConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "PutFunctionRecursionConfig")
	if err != nil {
		return err
	}
	var req struct {
		RecursiveLoop *string `json:"RecursiveLoop"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	switch {
	case req.RecursiveLoop == nil:
		return validation("recursiveLoop", "null", false, "Member must not be null")
	case *req.RecursiveLoop != "Allow" && *req.RecursiveLoop != "Terminate":
		return validation("recursiveLoop", *req.RecursiveLoop, false, "Member must satisfy enum value set: [Allow, Terminate]")
	}
	if err := h.cfg.Functions.PutSetting(r.Context(), h.account(r.Context()), name, "recursion", "", recursion{RecursiveLoop: *req.RecursiveLoop}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"RecursiveLoop": *req.RecursiveLoop})
	return nil
}

// invokeAsync serves the legacy InvokeAsync: the body is the event, queued
// like an Invoke with InvocationType Event; the answer is 202 {"Status":202}.
func (h *Handler) invokeAsync(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	if h.cfg.Async == nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Asynchronous invocation (InvokeAsync) is not enabled on this Flint server.")
	}
	payload, err := readBody(r, maxAsyncPayload, "InvokeAsync")
	if err != nil {
		return err
	}
	if err := checkPayload(payload); err != nil {
		return err
	}
	fn, alias, err := h.invokeTarget(r, rt)
	if err != nil {
		return err
	}
	given := givenQualifier(r, rt)
	if fn, err = h.waitReady(r.Context(), fn); err != nil {
		return err
	}
	if err := checkActive(fn); err != nil {
		return err
	}
	req := invocation.Request{RequestID: reqID, Payload: payload, TraceID: r.Header.Get("X-Amzn-Trace-Id"),
		Qualifier: given, InvokedFunctionARN: invokedARN(fn, alias, given)}
	if req.TraceID == "" {
		req.TraceID = h.newTraceID()
	}
	if err := h.cfg.Async.Enqueue(r.Context(), fn, req); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"Status": http.StatusAccepted})
	return nil
}
