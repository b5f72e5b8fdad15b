package asyncq

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// writeError writes err the way Lambda does: the status of its kind, the
// X-Amzn-ErrorType header and {"Type","message"}. Errors without a kind
// become ServiceException (500).
//
// The frontend's shared error writer was not importable when this was
// written; this one follows the same contract and can be swapped for it.
func writeError(w http.ResponseWriter, err error) {
	le := lambdaerr.As(err)
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
