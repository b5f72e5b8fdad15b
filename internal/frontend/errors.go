package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/writegate"
)

// Error types Lambda answers with that are not in lambdaerr's table
// because only the API edge produces them.
const (
	// validationException is what Lambda returns when a request breaks a
	// constraint of the API model (a length, a range, a pattern, an enum):
	// "1 validation error detected: Value '1000' at 'timeout' failed to
	// satisfy constraint: ...". The SDK has no typed error for it; it
	// surfaces as a smithy.APIError with ErrorCode "ValidationException",
	// and the AWS CLI prints "An error occurred (ValidationException)".
	validationException = "ValidationException"
	unknownOperation    = "UnknownOperationException"
	methodNotAllowed    = "MethodNotAllowedException"
)

// apiError is an error that only the frontend produces.
type apiError struct {
	typ    string
	status int
	msg    string
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

// validation returns Lambda's ValidationException for one broken
// constraint of the field at path (Lambda's camelCase member path).
// value is quoted into the message unless it is sensitive ("" hides it).
func validation(path, value string, hide bool, constraint string) error {
	v := "Value '" + value + "' at '" + path + "'"
	if hide {
		v = "Value at '" + path + "'"
	}
	return &apiError{typ: validationException, status: http.StatusBadRequest,
		msg: "1 validation error detected: " + v + " failed to satisfy constraint: " + constraint}
}

// lowerMessage lists the error types whose message member Lambda's model
// spells "message"; the others use "Message". The SDK reads the member of
// the exact spelling into the typed error's Message field.
var lowerMessage = map[string]bool{
	lambdaerr.InvalidParameterValue: true,
	lambdaerr.InvalidRequestContent: true,
	lambdaerr.PreconditionFailed:    true,
	lambdaerr.RequestEntityTooLarge: true,
	lambdaerr.ResourceConflict:      true,
	lambdaerr.ResourceNotReady:      true,
	lambdaerr.TooManyRequests:       true,
	lambdaerr.UnsupportedMediaType:  true,
	lambdaerr.CodeStorageExceeded:   true,
	validationException:             true,
	unknownOperation:                true,
	methodNotAllowed:                true,
	provisionedNotFound:             true,
}

// writeError answers with err translated into Lambda's error shape: the
// status code, X-Amzn-ErrorType and a JSON body {"Type": "User"|"Service",
// "Message"|"message": ...} (plus "Reason" and Retry-After for
// TooManyRequestsException). It is the one place errors become HTTP.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, reqID string, err error) {
	var typ, msg, reason string
	var status, retryAfter int
	var ae *apiError
	if errors.As(err, &ae) {
		typ, msg, status = ae.typ, ae.msg, ae.status
	} else {
		if !errors.As(err, new(*lambdaerr.Error)) {
			if known := writegate.Recognize("the change", err); known != nil {
				err = known
			}
		}
		le := lambdaerr.Public(err)
		typ, msg, status, reason, retryAfter = le.Type, le.Message, le.Status(), le.Reason, le.RetryAfterSeconds
	}
	body := map[string]string{"Type": "User"}
	if status >= 500 {
		body["Type"] = "Service"
		h.log.Error("request failed", "requestId", reqID, "method", r.Method, "path", r.URL.Path, "type", typ, "err", err)
	} else {
		h.log.Debug("request rejected", "requestId", reqID, "method", r.Method, "path", r.URL.Path, "type", typ, "msg", msg)
	}
	if lowerMessage[typ] {
		body["message"] = msg
	} else {
		body["Message"] = msg
	}
	if typ == lambdaerr.TooManyRequests && reason != "" {
		body["Reason"] = reason
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("X-Amzn-ErrorType", typ)
	writeJSON(w, status, body)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		data = []byte(fmt.Sprintf(`{"Type":"Service","Message":%q}`, err.Error()))
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
