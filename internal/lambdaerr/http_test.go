package lambdaerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
)

func TestWriteHTTP(t *testing.T) {
	throttle := &Error{Type: TooManyRequests, Message: "slow down", Reason: "ReservedFunctionConcurrentInvocationLimitExceeded", RetryAfterSeconds: 2}
	cases := []struct {
		err        error
		status     int
		typ, kind  string
		reason     string
		retryAfter string
	}{
		{fmt.Errorf("wrapped: %w", New(ResourceNotFound, "no %s", "fn")), 404, ResourceNotFound, "User", "", ""},
		{throttle, 429, TooManyRequests, "User", throttle.Reason, "2"},
		{errors.New("disk on fire"), 500, Service, "Service", "", ""},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		WriteHTTP(rec, tc.err)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q: %v", tc.err, rec.Body, err)
		}
		if rec.Code != tc.status || rec.Header().Get("X-Amzn-ErrorType") != tc.typ || body["Type"] != tc.kind ||
			body["Reason"] != tc.reason || rec.Header().Get("Retry-After") != tc.retryAfter || body["message"] == "" {
			t.Errorf("%v: status %d headers %v body %v", tc.err, rec.Code, rec.Header(), body)
		}
	}
}
