package sigv4

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error types of a refused request, as AWS names them.
const (
	UnrecognizedClient         = "UnrecognizedClientException"
	InvalidSignature           = "InvalidSignatureException"
	MissingAuthenticationToken = "MissingAuthenticationTokenException"
	IncompleteSignature        = "IncompleteSignatureException"
	AccessDenied               = "AccessDeniedException"
	RequestTooLarge            = "RequestTooLargeException"
)

// AWS's own message texts.
const (
	msgUnrecognized = "The security token included in the request is invalid."
	msgMismatch     = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgMissing = "Missing Authentication Token"
)

// Error is a refused request: a 403 (413 for a body too large to verify)
// with an AWS error type. Its message never contains a secret.
type Error struct {
	Type    string
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func incomplete(msg string) *Error {
	return &Error{Type: IncompleteSignature, Status: http.StatusForbidden, Message: msg}
}

func invalidSignature(msg string) *Error {
	return &Error{Type: InvalidSignature, Status: http.StatusForbidden, Message: msg}
}

// amzDate is the ISO 8601 basic format of X-Amz-Date.
const amzDate = "20060102T150405Z"

func expired(signed, now time.Time, skew time.Duration) *Error {
	return invalidSignature("Signature expired: " + signed.UTC().Format(amzDate) + " is now earlier than " +
		now.Add(-skew).UTC().Format(amzDate) + " (" + now.UTC().Format(amzDate) + " - " + minutes(skew) + ")")
}

func notYetCurrent(signed, now time.Time, skew time.Duration) *Error {
	return invalidSignature("Signature not yet current: " + signed.UTC().Format(amzDate) + " is still later than " +
		now.Add(skew).UTC().Format(amzDate) + " (" + now.UTC().Format(amzDate) + " + " + minutes(skew) + ")")
}

func minutes(d time.Duration) string { return strconv.Itoa(int(d/time.Minute)) + " min." }

// writeError answers with e as AWS's JSON protocols do: the status,
// X-Amzn-ErrorType and {"message": ...}, which the AWS SDKs and CLI turn
// into an error of that type.
func writeError(w http.ResponseWriter, e *Error) {
	body, _ := json.Marshal(map[string]string{"message": e.Message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amzn-ErrorType", e.Type)
	h.Set("X-Amzn-RequestId", requestID())
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// requestID is a random UUID v4 for a refused request.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
