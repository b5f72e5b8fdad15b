// Package lambdaerr is the table of Lambda-visible error kinds. Components
// return (or wrap with %w) an *Error where the kind matters to the caller;
// the frontend translates it once into Lambda's HTTP status, the
// X-Amzn-ErrorType header and the JSON body. Any other error becomes a
// ServiceException (500).
package lambdaerr

import (
	"errors"
	"fmt"
	"net/http"
)

// Error types, as Lambda names them, with their HTTP status codes.
const (
	ResourceNotFound      = "ResourceNotFoundException"
	InvalidParameterValue = "InvalidParameterValueException"
	ResourceConflict      = "ResourceConflictException"
	RequestEntityTooLarge = "RequestEntityTooLargeException"
	TooManyRequests       = "TooManyRequestsException"
	Service               = "ServiceException"
	InvalidRequestContent = "InvalidRequestContentException"
	UnsupportedMediaType  = "UnsupportedMediaTypeException"
	PreconditionFailed    = "PreconditionFailedException"
	CodeStorageExceeded   = "CodeStorageExceededException"
	InvalidZipFile        = "InvalidZipFileException"
	ResourceNotReady      = "ResourceNotReadyException"
	PolicyLengthExceeded  = "PolicyLengthExceededException"
	// AccessDenied: the caller's account may not act on another
	// account's resource (no resource-based policy allows it).
	AccessDenied = "AccessDeniedException"
	// ResourceInUse: the resource is being changed (an event source
	// mapping in a transitional state).
	ResourceInUse = "ResourceInUseException"
)

var statusOf = map[string]int{
	ResourceNotFound:      http.StatusNotFound,
	InvalidParameterValue: http.StatusBadRequest,
	ResourceConflict:      http.StatusConflict,
	RequestEntityTooLarge: http.StatusRequestEntityTooLarge,
	TooManyRequests:       http.StatusTooManyRequests,
	Service:               http.StatusInternalServerError,
	InvalidRequestContent: http.StatusBadRequest,
	UnsupportedMediaType:  http.StatusUnsupportedMediaType,
	PreconditionFailed:    http.StatusPreconditionFailed,
	CodeStorageExceeded:   http.StatusBadRequest,
	InvalidZipFile:        http.StatusBadGateway,
	ResourceNotReady:      http.StatusBadGateway,
	PolicyLengthExceeded:  http.StatusBadRequest,
	AccessDenied:          http.StatusForbidden,
	ResourceInUse:         http.StatusBadRequest,
}

// Error is a Lambda-visible error.
type Error struct {
	Type    string // one of the constants above
	Message string
	// Reason is set for TooManyRequestsException
	// (e.g. "ConcurrentInvocationLimitExceeded").
	Reason string
	// RetryAfterSeconds, when > 0, is sent as Retry-After.
	RetryAfterSeconds int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Status is the HTTP status code Lambda answers with for e.
func (e *Error) Status() int {
	if s, ok := statusOf[e.Type]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// New returns an *Error of the given type with a formatted message.
func New(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// As returns the *Error in err's chain, or a ServiceException wrapping
// err's text when there is none.
func As(err error) *Error {
	var le *Error
	if errors.As(err, &le) {
		return le
	}
	return &Error{Type: Service, Message: err.Error()}
}

// Is reports whether err carries a Lambda error of type typ.
func Is(err error, typ string) bool {
	var le *Error
	return errors.As(err, &le) && le.Type == typ
}

// Wrap returns an error that reaches a client as an *Error of type typ
// with message msg (errors.As finds it first), while its Error text, for
// the server's log, keeps cause. Use it where cause's text may hold a host
// path or a raw library message.
func Wrap(typ, msg string, cause error) error {
	return &wrapped{le: &Error{Type: typ, Message: msg}, cause: cause}
}

type wrapped struct {
	le    *Error
	cause error
}

func (w *wrapped) Error() string   { return w.le.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.le, w.cause} }

// Public is what a client may be told about err: the *Error in its chain,
// or a ServiceException saying only that something failed inside, since
// the text of an unclassified error may hold host paths or raw library
// messages (the caller logs err itself).
func Public(err error) *Error {
	var le *Error
	if errors.As(err, &le) {
		return le
	}
	return &Error{Type: Service, Message: "internal error; the server log has the details"}
}
