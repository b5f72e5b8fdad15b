package frontend

import (
	"net/http"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Lambda operations Flint does not implement, by route. Every one answers
// in Lambda's error format, so SDKs raise a typed exception:
//
//   - reads of things Flint never has (account resource policies, code
//     signing configs, capacity providers, durable executions) answer as Lambda does when there are none: an
//     empty list, or ResourceNotFoundException;
//   - writes answer InvalidParameterValueException saying that Flint does
//     not support the operation, and why.
//
// Layers, function policies, function URLs, response streaming and event
// source mappings are not in this table: they have routes.
type unsupportedOp struct {
	method, pattern, op string
	// list, when set, is the empty list's member: the operation answers
	// {list: []}.
	list string
	// notFound answers ResourceNotFoundException with this message.
	notFound string
	// why completes "<op> is not supported by Flint: <why>".
	why string
}

const (
	noResource     = "The resource you requested does not exist."
	whyCSC         = "Flint does not verify code signatures."
	whyCapacity    = "Flint runs every function on its own hosts; there are no capacity providers."
	whyDurable     = "Flint does not run durable executions."
	whyResourcePol = "Flint keeps resource-based policies per function (AddPermission), not per resource ARN."
)

var unsupportedOps = []unsupportedOp{

	{method: "POST", pattern: "/2020-04-22/code-signing-configs", op: "CreateCodeSigningConfig", why: whyCSC},
	{method: "GET", pattern: "/2020-04-22/code-signing-configs", op: "ListCodeSigningConfigs", list: "CodeSigningConfigs"},
	{method: "GET", pattern: "/2020-04-22/code-signing-configs/*", op: "GetCodeSigningConfig", notFound: "Code signing config not found: Flint has none (it does not verify code signatures)."},
	{method: "PUT", pattern: "/2020-04-22/code-signing-configs/*", op: "UpdateCodeSigningConfig", notFound: "Code signing config not found: Flint has none (it does not verify code signatures)."},
	{method: "DELETE", pattern: "/2020-04-22/code-signing-configs/*", op: "DeleteCodeSigningConfig", notFound: "Code signing config not found: Flint has none (it does not verify code signatures)."},
	{method: "GET", pattern: "/2020-04-22/code-signing-configs/*/functions", op: "ListFunctionsByCodeSigningConfig", notFound: "Code signing config not found: Flint has none (it does not verify code signatures)."},
	{method: "PUT", pattern: "/2020-06-30/functions/*/code-signing-config", op: "PutFunctionCodeSigningConfig", why: whyCSC},

	{method: "POST", pattern: "/2025-11-30/capacity-providers", op: "CreateCapacityProvider", why: whyCapacity},
	{method: "GET", pattern: "/2025-11-30/capacity-providers", op: "ListCapacityProviders", list: "CapacityProviders"},
	{method: "GET", pattern: "/2025-11-30/capacity-providers/*", op: "GetCapacityProvider", notFound: noResource},
	{method: "PUT", pattern: "/2025-11-30/capacity-providers/*", op: "UpdateCapacityProvider", notFound: noResource},
	{method: "DELETE", pattern: "/2025-11-30/capacity-providers/*", op: "DeleteCapacityProvider", notFound: noResource},
	{method: "GET", pattern: "/2025-11-30/capacity-providers/*/function-versions", op: "ListFunctionVersionsByCapacityProvider", notFound: noResource},
	{method: "GET", pattern: "/2025-11-30/functions/*/function-scaling-config", op: "GetFunctionScalingConfig", why: whyCapacity},
	{method: "PUT", pattern: "/2025-11-30/functions/*/function-scaling-config", op: "PutFunctionScalingConfig", why: whyCapacity},

	{method: "GET", pattern: "/2025-12-01/functions/*/durable-executions", op: "ListDurableExecutionsByFunction", list: "DurableExecutions"},
	{method: "GET", pattern: "/2025-12-01/durable-executions/*", op: "GetDurableExecution", notFound: noResource},
	{method: "GET", pattern: "/2025-12-01/durable-executions/*/history", op: "GetDurableExecutionHistory", notFound: noResource},
	{method: "GET", pattern: "/2025-12-01/durable-executions/*/state", op: "GetDurableExecutionState", notFound: noResource},
	{method: "POST", pattern: "/2025-12-01/durable-executions/*/checkpoint", op: "CheckpointDurableExecution", notFound: noResource},
	{method: "POST", pattern: "/2025-12-01/durable-executions/*/stop", op: "StopDurableExecution", notFound: noResource},
	{method: "POST", pattern: "/2025-12-01/durable-execution-callbacks/*/succeed", op: "SendDurableExecutionCallbackSuccess", notFound: noResource},
	{method: "POST", pattern: "/2025-12-01/durable-execution-callbacks/*/fail", op: "SendDurableExecutionCallbackFailure", notFound: noResource},
	{method: "POST", pattern: "/2025-12-01/durable-execution-callbacks/*/heartbeat", op: "SendDurableExecutionCallbackHeartbeat", notFound: noResource},

	{method: "GET", pattern: "/2026-07-09/resource-policy/*", op: "GetResourcePolicy", notFound: noResource},
	{method: "PUT", pattern: "/2026-07-09/resource-policy/*", op: "PutResourcePolicy", why: whyResourcePol},
	{method: "DELETE", pattern: "/2026-07-09/resource-policy/*", op: "DeleteResourcePolicy", notFound: noResource},
}

// matchPattern reports whether an escaped path matches a pattern whose
// "*" segments match any one non-empty segment.
func matchPattern(pattern, escaped string) bool {
	ps := strings.Split(pattern, "/")
	es := strings.Split(strings.TrimSuffix(escaped, "/"), "/")
	if len(ps) != len(es) {
		return false
	}
	for i, p := range ps {
		if p == "*" {
			if es[i] == "" {
				return false
			}
		} else if p != es[i] {
			return false
		}
	}
	return true
}

// findUnsupported returns the unsupported operation a request names.
func findUnsupported(method, escaped string) (unsupportedOp, bool) {
	for _, u := range unsupportedOps {
		if u.method == method && matchPattern(u.pattern, escaped) {
			return u, true
		}
	}
	return unsupportedOp{}, false
}

// serveUnsupported answers an operation of the table.
func (h *Handler) serveUnsupported(w http.ResponseWriter, u unsupportedOp) error {
	switch {
	case u.list != "":
		writeJSON(w, http.StatusOK, map[string][]struct{}{u.list: {}})
		return nil
	case u.notFound != "":
		return lambdaerr.New(lambdaerr.ResourceNotFound, "%s", u.notFound)
	}
	return lambdaerr.New(lambdaerr.InvalidParameterValue, "%s is not supported by Flint: %s", u.op, u.why)
}
