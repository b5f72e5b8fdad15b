// Package invocation holds the types of one synchronous invocation as it
// travels Frontend → Worker Manager → Worker → Runtime API and back.
package invocation

import (
	"errors"
	"time"
)

// ErrNotDelivered is wrapped by a sandbox's Invoke error when the event
// never reached the function (its runtime had exited, e.g. after a crash
// in the previous invocation): the invocation may run on another sandbox,
// as Lambda runs it on a fresh execution environment.
var ErrNotDelivered = errors.New("invocation: the event did not reach the function")

// Request is one invocation of a function version.
type Request struct {
	// RequestID is Lambda's request id (a UUID), the same across retries.
	RequestID string
	// Payload is the event, as JSON bytes (may be empty, meaning "{}"-less
	// empty payload as Lambda passes it).
	Payload []byte
	// ClientContext is the client context as JSON: the frontend decodes
	// the caller's base64 X-Amz-Client-Context, and the Runtime API hands
	// it to the runtime as is in Lambda-Runtime-Client-Context, as Lambda
	// does ("" for none).
	ClientContext string
	// Qualifier is the qualifier the caller named: "" (unqualified), a
	// version, $LATEST or an alias. The async queue keeps it as given and
	// resolves an alias when the event runs.
	Qualifier string
	// InvokedFunctionARN is the ARN the caller invoked (qualified with an
	// alias when invoked through one), sent to the runtime as
	// Lambda-Runtime-Invoked-Function-Arn. "" means the sandbox's own ARN.
	InvokedFunctionARN string
	// TraceID is passed as Lambda-Runtime-Trace-Id / _X_AMZN_TRACE_ID.
	TraceID string
}

// FunctionError kinds, as in X-Amz-Function-Error.
const (
	ErrorUnhandled = "Unhandled"
	ErrorHandled   = "Handled"
)

// Result is the outcome of one invocation that reached a sandbox.
type Result struct {
	RequestID string
	// Payload is the function's response, or, when FunctionError is set,
	// the error document {"errorMessage","errorType","stackTrace"}.
	Payload []byte
	// FunctionError is "" on success, else ErrorUnhandled.
	FunctionError string
	// ErrorType mirrors the errorType of the error document (e.g.
	// "Sandbox.Timedout", "Runtime.ExitError"), "" on success.
	ErrorType string
	// Log is the invocation's log as framed by the worker (any init output,
	// START, the function's lines, END, REPORT). The frontend sends the
	// last 4 KB of it as X-Amz-Log-Result when asked for LogType Tail.
	Log []byte
	// ExecutedVersion is the version that ran ("$LATEST" or a number).
	ExecutedVersion string
	// SandboxID names the sandbox that ran the invocation.
	SandboxID string
	// ColdStart is true when the sandbox was created for this invocation.
	ColdStart    bool
	InitDuration time.Duration
	Duration     time.Duration
	// Host is the worker host the sandbox runs on ("" when unknown).
	Host string
	// MemoryUsedBytes is the sandbox's peak memory use when the
	// invocation ended (REPORT's Max Memory Used), 0 when unknown.
	MemoryUsedBytes uint64
	// Cold is a cold start's step breakdown; nil for a warm invocation
	// (and for a cold one whose steps were not measured).
	Cold *ColdSteps
}

// ColdSteps is where the time of a cold start went, step by step: the
// Worker Manager fills Placement, the worker the rest.
type ColdSteps struct {
	// Placement is the Placement Service's choice of a host.
	Placement time.Duration
	// CodeFetch is getting the code package onto the host (a cache hit
	// costs next to nothing).
	CodeFetch time.Duration
	// SandboxCreate is the sandbox driver's Create.
	SandboxCreate time.Duration
	// RuntimeInit runs from the end of SandboxCreate to the runtime's
	// first request for an event (its init phase).
	RuntimeInit time.Duration
}
