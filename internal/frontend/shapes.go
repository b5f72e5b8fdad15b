package frontend

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Wire shapes, named and spelled as in Lambda's API model.

type environment struct {
	Variables map[string]string `json:"Variables"`
}

type tracingConfig struct {
	Mode string `json:"Mode"`
}

type ephemeralStorage struct {
	Size int `json:"Size"`
}

type snapStartResponse struct {
	ApplyOn            string `json:"ApplyOn"`
	OptimizationStatus string `json:"OptimizationStatus"`
}

type loggingConfig struct {
	LogFormat string `json:"LogFormat,omitempty"`
	LogGroup  string `json:"LogGroup,omitempty"`
}

// functionConfiguration is Lambda's FunctionConfiguration.
type functionConfiguration struct {
	FunctionName     string        `json:"FunctionName"`
	FunctionArn      string        `json:"FunctionArn"`
	Runtime          string        `json:"Runtime"`
	Role             string        `json:"Role"`
	Handler          string        `json:"Handler,omitempty"`
	CodeSize         int64         `json:"CodeSize"`
	Description      string        `json:"Description"`
	Timeout          int           `json:"Timeout"`
	MemorySize       int           `json:"MemorySize"`
	LastModified     string        `json:"LastModified"`
	CodeSha256       string        `json:"CodeSha256"`
	Version          string        `json:"Version"`
	Environment      *environment  `json:"Environment,omitempty"`
	TracingConfig    tracingConfig `json:"TracingConfig"`
	RevisionId       string        `json:"RevisionId"`
	State            string        `json:"State"`
	StateReason      string        `json:"StateReason,omitempty"`
	StateReasonCode  string        `json:"StateReasonCode,omitempty"`
	LastUpdateStatus string        `json:"LastUpdateStatus,omitempty"`
	// LastUpdateStatusReason and ...Code explain an InProgress or Failed
	// update.
	LastUpdateStatusReason     string            `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string            `json:"LastUpdateStatusReasonCode,omitempty"`
	PackageType                string            `json:"PackageType"`
	Architectures              []string          `json:"Architectures"`
	EphemeralStorage           ephemeralStorage  `json:"EphemeralStorage"`
	SnapStart                  snapStartResponse `json:"SnapStart"`
	LoggingConfig              loggingConfig     `json:"LoggingConfig"`
	DeadLetterConfig           *deadLetter       `json:"DeadLetterConfig,omitempty"`
	Layers                     []layerOut        `json:"Layers,omitempty"`
	// CapacityProviderConfig is absent for a function without one.
	CapacityProviderConfig *capacityProviderConfig `json:"CapacityProviderConfig,omitempty"`
}

// lastModifiedLayout is Lambda's LastModified format; the zone is always
// UTC, written "+0000".
const lastModifiedLayout = "2006-01-02T15:04:05.000"

func (h *Handler) configuration(f *metadata.Function) functionConfiguration {
	c := functionConfiguration{
		FunctionName:           f.Name,
		FunctionArn:            f.ARN(),
		Runtime:                f.Runtime,
		Role:                   f.Role,
		Handler:                f.Handler,
		CodeSize:               f.CodeSize,
		Description:            f.Description,
		Timeout:                f.Timeout,
		MemorySize:             f.MemorySize,
		LastModified:           f.LastModified.UTC().Format(lastModifiedLayout) + "+0000",
		CodeSha256:             f.CodeSha256,
		Version:                f.Version,
		TracingConfig:          tracingConfig{Mode: "PassThrough"},
		RevisionId:             f.RevisionID,
		State:                  f.State,
		StateReason:            f.StateReason,
		LastUpdateStatus:       f.LastUpdateStatus,
		LastUpdateStatusReason: f.LastUpdateStatusReason,
		PackageType:            "Zip",
		Architectures:          []string{f.Architecture},
		EphemeralStorage:       ephemeralStorage{Size: f.EphemeralMB},
		SnapStart:              snapStartResponse{ApplyOn: "None", OptimizationStatus: "Off"},
		LoggingConfig:          loggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/" + f.Name},
	}
	if f.Version != metadata.LatestVersion && f.Version != "" {
		c.FunctionArn = f.QualifiedARN()
	}
	if c.Architectures[0] == "" {
		c.Architectures[0] = "x86_64"
	}
	if len(f.Environment) > 0 {
		c.Environment = &environment{Variables: f.Environment}
	}
	c.Layers = layersOut(f.Layers)
	c.CapacityProviderConfig = capacityProviderOut(f)
	if f.DeadLetterTargetArn != "" {
		c.DeadLetterConfig = &deadLetter{TargetArn: f.DeadLetterTargetArn}
	}
	if f.State == "Failed" || f.State == "Inactive" || f.State == "Pending" {
		c.StateReasonCode = map[string]string{"Failed": "InternalError", "Inactive": "Idle", "Pending": "Creating"}[f.State]
	}
	if f.LastUpdateStatus == "Failed" {
		c.LastUpdateStatusReasonCode = "InternalError"
	}
	return c
}

// Request body limits.
const (
	// maxCodeRequest is Lambda's limit on a CreateFunction or
	// UpdateFunctionCode request: the base64 of a 50 MB zip plus JSON.
	maxCodeRequest = 69905067
	// maxConfigRequest bounds other JSON requests (configuration updates).
	maxConfigRequest = 1 << 20
	// maxSyncPayload and maxAsyncPayload are Lambda's invocation payload
	// limits.
	maxSyncPayload  = 6291456
	maxAsyncPayload = 1048576
	// maxDrain is how much of an oversized request body is read and thrown
	// away, so that the client, still sending, reads the 413 instead of a
	// reset connection. Larger bodies are cut off.
	maxDrain = 80 << 20
)

// readBody reads at most limit bytes of the request body. A longer body
// is RequestEntityTooLargeException naming the operation, as Lambda words it.
func readBody(r *http.Request, limit int64, operation string) ([]byte, error) {
	tooLarge := func() error {
		return lambdaerr.New(lambdaerr.RequestEntityTooLarge,
			"Request must be smaller than %d bytes for the %s operation", limit, operation)
	}
	if r.ContentLength > limit {
		_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
		return nil, tooLarge()
	}
	if r.ContentLength >= 0 {
		// The server's body reader ends at Content-Length: read exactly
		// that into one allocation.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not read request body: %v", err)
		}
		return body, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not read request body: %v", err)
	}
	if n > limit {
		_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
		return nil, tooLarge()
	}
	return buf.Bytes(), nil
}

// decodeJSON reads a JSON request body into v. An empty body is {}.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not parse request body into json: %s", jsonProblem(err))
	}
	if d.More() {
		return lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not parse request body into json: unexpected data after the JSON value")
	}
	return nil
}

// jsonProblem describes a decoding error in terms of the request.
func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %s has the wrong type (%s where %s was expected)", e.Field, e.Value, e.Type)
	case *json.SyntaxError:
		return "malformed JSON at offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Error()
	}
	return err.Error()
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("frontend: random id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte // one allocation: the string
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:]), nil
}

// queryValue is r's query parameter key, without parsing (or allocating)
// when the URL has no query, as an Invoke's usually has not.
func queryValue(r *http.Request, key string) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get(key)
}
