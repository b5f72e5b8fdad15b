package lambdaerr

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// WriteHTTP answers with err in Lambda's error shape: the status of its
// kind, X-Amzn-ErrorType, Retry-After when set, and the JSON body
// {"Type": "User"|"Service", "message": ..., "Reason": ...}. Errors
// without a kind become ServiceException (500) without their text (see
// Public). Flint's own endpoints
// (async status, queues, logs, event invoke configs) use it; the Lambda
// API frontend spells the message member per error type as Lambda's model
// does.
func WriteHTTP(w http.ResponseWriter, err error) {
	le := Public(err)
	typ := "User"
	if le.Status() >= 500 {
		typ = "Service"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", le.Type)
	if le.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(le.RetryAfterSeconds))
	}
	w.WriteHeader(le.Status())
	body := map[string]string{"Type": typ, "message": le.Message}
	if le.Reason != "" {
		body["Reason"] = le.Reason
	}
	_ = json.NewEncoder(w).Encode(body)
}
