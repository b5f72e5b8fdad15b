// Package hostproxy serves a worker host (a workermanager.Host) to the
// Worker Managers of other Flint nodes, and gives those managers a
// workermanager.Host that reaches it: the same contract in-process or
// across machines, as containerd serves a snapshotter in-process or
// through its proxy.
//
// The transport is plain HTTP/1.1 with keep-alive on a listener of its own
// (flint server --worker-listen), advertised in the host's heartbeat. It
// was chosen over NATS request/reply because invocations carry up to 6 MB
// each way (NATS servers default to a 1 MB max_payload) and because it
// adds no hop through a NATS server to a warm invocation
// (docs/cluster.md has the measurements).
//
// Routes (all under /flint/host/v1):
//
//	POST   /sandboxes              body: lambdafn.Function (JSON); X-Flint-Owner names the manager's node
//	                               → 200 {"id": "<sandbox id>"}
//	POST   /sandboxes/{id}/init    → 204 (workermanager.Initializer)
//	POST   /sandboxes/{id}/invoke  body: the payload; X-Flint-Request-Id, X-Flint-Client-Context, X-Flint-Trace-Id
//	                               → 200, body: 4-byte big-endian length n, n bytes of resultMeta (JSON), the payload
//	DELETE /sandboxes/{id}         → 204
//
// Every request carries the cluster's worker port token
// ("Authorization: Bearer <token>", auth.go); without it the answer is 401
// with kind "unauthorized".
//
// Errors answer a non-2xx status with {"kind","message"}; kind "full" maps
// to workermanager.ErrHostFull, "closed" and "unknown" are plain errors.
// A client that cannot reach the host at all returns errors wrapping
// workermanager.ErrHostUnreachable.
//
// Sandboxes belong to the node that created them: the server destroys the
// sandboxes of an owner that is no longer alive (ServerConfig.OwnerAlive),
// so a frontend lost with kill -9 leaks no capacity.
package hostproxy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

const prefix = "/flint/host/v1"

// Headers of the invoke and create requests.
const (
	hdrOwner         = "X-Flint-Owner"
	hdrRequestID     = "X-Flint-Request-Id"
	hdrClientContext = "X-Flint-Client-Context"
	hdrTraceID       = "X-Flint-Trace-Id"
)

// maxPayload bounds an invoke request body: Lambda's 6 MB synchronous
// payload limit, with room to spare (the frontend enforces the limit).
const maxPayload = 8 << 20

// maxMeta bounds the result metadata (mostly the invocation's log).
const maxMeta = 16 << 20

// maxFunction bounds a create request body.
const maxFunction = 1 << 20

// resultMeta is invocation.Result without its payload, plus the sandbox's
// health after the invocation.
type resultMeta struct {
	RequestID       string        `json:"requestId"`
	FunctionError   string        `json:"functionError,omitempty"`
	ErrorType       string        `json:"errorType,omitempty"`
	Log             []byte        `json:"log,omitempty"`
	ExecutedVersion string        `json:"executedVersion,omitempty"`
	SandboxID       string        `json:"sandboxId,omitempty"`
	InitDuration    time.Duration `json:"initDuration,omitempty"`
	Duration        time.Duration `json:"duration"`
	Healthy         bool          `json:"healthy"`
}

type createResponse struct {
	ID string `json:"id"`
}

type errorBody struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Error kinds.
const (
	kindFull    = "full"
	kindClosed  = "closed"
	kindUnknown = "unknown"
	kindError   = "error"
)

// writeResult writes res as an invoke response body.
func writeResult(w io.Writer, res invocation.Result, healthy bool) error {
	meta, err := json.Marshal(resultMeta{
		RequestID: res.RequestID, FunctionError: res.FunctionError, ErrorType: res.ErrorType,
		Log: res.Log, ExecutedVersion: res.ExecutedVersion, SandboxID: res.SandboxID,
		InitDuration: res.InitDuration, Duration: res.Duration, Healthy: healthy,
	})
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(meta)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(meta); err != nil {
		return err
	}
	_, err = w.Write(res.Payload)
	return err
}

// readResult parses an invoke response body.
func readResult(r io.Reader) (invocation.Result, bool, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return invocation.Result{}, false, fmt.Errorf("read result: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxMeta {
		return invocation.Result{}, false, fmt.Errorf("read result: metadata of %d bytes is too large", size)
	}
	metaBytes := make([]byte, size)
	if _, err := io.ReadFull(r, metaBytes); err != nil {
		return invocation.Result{}, false, fmt.Errorf("read result: %w", err)
	}
	var m resultMeta
	if err := json.Unmarshal(metaBytes, &m); err != nil {
		return invocation.Result{}, false, fmt.Errorf("read result: %w", err)
	}
	payload, err := io.ReadAll(io.LimitReader(r, maxPayload+1))
	if err != nil {
		return invocation.Result{}, false, fmt.Errorf("read result payload: %w", err)
	}
	if len(payload) > maxPayload {
		return invocation.Result{}, false, errors.New("read result: payload too large")
	}
	return invocation.Result{
		RequestID: m.RequestID, Payload: payload, FunctionError: m.FunctionError, ErrorType: m.ErrorType,
		Log: m.Log, ExecutedVersion: m.ExecutedVersion, SandboxID: m.SandboxID,
		InitDuration: m.InitDuration, Duration: m.Duration,
	}, m.Healthy, nil
}
