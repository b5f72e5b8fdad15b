// Package writegate is the contract between the backbone, which knows
// whether it can take a write right now (connected, quorum, room on disk),
// and the components that write to it (the async queue, the log store, the
// code store): they ask the Gate before a write, so a write that cannot
// succeed is refused at once instead of timing out, and they translate a
// failed write with Describe, so what reaches a client says what happened
// in the user's terms and never carries a raw library message.
//
// The package imports no NATS client: it only knows the words.
package writegate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Kind is what a write is for. Kinds are refused in order as storage runs
// out: logs first, then everything else, so events and functions keep the
// last of the space.
type Kind int

const (
	// Logs are function logs: dropped (and counted) rather than refused.
	Logs Kind = iota
	// Events are accepted asynchronous invocations and their status.
	Events
	// Data is everything else a user stores: functions, code packages,
	// configurations, queue messages.
	Data
)

func (k Kind) String() string {
	switch k {
	case Logs:
		return "logs"
	case Events:
		return "events"
	default:
		return "data"
	}
}

// Gate reports whether the backbone can take a write of a kind now.
// Allow returns nil, or a *lambdaerr.Error (ServiceException) whose message
// starts with "storage full:" or "backbone unavailable:" and says what the
// operator can do. It never blocks and is safe for concurrent use. A nil
// Gate (see Check) allows everything.
type Gate interface {
	Allow(k Kind) error
}

// Check asks g, allowing everything when g is nil.
func Check(g Gate, k Kind) error {
	if g == nil {
		return nil
	}
	return g.Allow(k)
}

// Reasons a write fails, as the first words of the message a client sees.
const (
	StorageFull = "storage full"
	Unavailable = "backbone unavailable"
)

// StorageFullError is the error Allow returns when there is no room; detail
// says how much there is (never a host path).
func StorageFullError(detail string) *lambdaerr.Error {
	return &lambdaerr.Error{Type: lambdaerr.Service, Message: StorageFull + ": " + detail}
}

// UnavailableError is the error Allow returns when the backbone cannot be
// written to for another reason.
func UnavailableError(detail string) *lambdaerr.Error {
	return &lambdaerr.Error{Type: lambdaerr.Service, Message: Unavailable + ": " + detail}
}

// Describe translates a failed backbone write of what (e.g. "event
// 1b2c…", "code package") into the error a client sees: a *lambdaerr.Error
// that err's chain already carries is kept; NATS and JetStream failures
// become a ServiceException saying whether storage is full or the backbone
// did not answer, and that what was not stored. Raw library messages never
// reach the client; the returned error's own text keeps err for the log.
func Describe(what string, err error) error {
	if err == nil {
		return nil
	}
	var le *lambdaerr.Error
	if errors.As(err, &le) {
		return le
	}
	text, ok := classify(what, err)
	if !ok {
		text = fmt.Sprintf("internal error storing %s; the server log has the details", what)
	}
	return lambdaerr.Wrap(lambdaerr.Service, text, err)
}

// Recognize is Describe for errors that may or may not come from the
// backbone: a ServiceException when err is a backbone failure Describe
// knows, else nil.
func Recognize(what string, err error) error {
	if text, ok := classify(what, err); ok {
		return lambdaerr.Wrap(lambdaerr.Service, text, err)
	}
	return nil
}

// classify names a backbone failure in the user's terms.
func classify(what string, err error) (string, bool) {
	msg := strings.ToLower(err.Error())
	switch {
	case isStorageFull(msg):
		return StorageFull + ": " + fmt.Sprintf("the backbone has no room to store %s; free space on the data dir or raise its storage limit (--nats-max-store)", what), true
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "nats: timeout") || strings.Contains(msg, "timeout waiting for ack") || strings.Contains(msg, "i/o timeout"):
		return Unavailable + ": " + fmt.Sprintf("the backbone did not acknowledge %s in time, so it may not be stored; retry later", what), true
	case strings.Contains(msg, "no responders") || strings.Contains(msg, "no response from stream") ||
		strings.Contains(msg, "nats: connection closed") || strings.Contains(msg, "nats: connection draining") ||
		strings.Contains(msg, "jetstream system temporarily unavailable") || strings.Contains(msg, "no suitable peers") ||
		strings.Contains(msg, "jetstream not enabled") || strings.Contains(msg, "leader not") ||
		strings.Contains(msg, "duplicate message id is in process"):
		return Unavailable + ": " + fmt.Sprintf("the backbone cannot take writes now (no quorum or not reachable); %s was not stored, retry later", what), true
	}
	return "", false
}

// isStorageFull recognises JetStream's words for "no room": the account's
// or server's storage limit, a stream's byte limit, or the disk itself.
func isStorageFull(msg string) bool {
	for _, s := range []string{"insufficient storage", "insufficient resources", "resource limits exceeded",
		"no space left", "maximum bytes exceeded", "storage resources", "storage full"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
