package sqs

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of SQS, as the JSON protocol names them (the shape name);
// QueryCode is the code the query protocol (and the JSON protocol's
// x-amzn-query-error header) uses.
const (
	QueueDoesNotExist            = "QueueDoesNotExist"
	QueueNameExists              = "QueueNameExists"
	ReceiptHandleIsInvalid       = "ReceiptHandleIsInvalid"
	MessageNotInflight           = "MessageNotInflight"
	InvalidAttributeName         = "InvalidAttributeName"
	InvalidAttributeValue        = "InvalidAttributeValue"
	InvalidMessageContents       = "InvalidMessageContents"
	InvalidParameterValue        = "InvalidParameterValue"
	MissingParameter             = "MissingParameter"
	EmptyBatchRequest            = "EmptyBatchRequest"
	TooManyEntriesInBatchRequest = "TooManyEntriesInBatchRequest"
	BatchEntryIdsNotDistinct     = "BatchEntryIdsNotDistinct"
	InvalidBatchEntryId          = "InvalidBatchEntryId"
	BatchRequestTooLong          = "BatchRequestTooLong"
	UnsupportedOperation         = "UnsupportedOperation"
	InvalidAction                = "InvalidAction"
	InternalError                = "InternalError"
)

// queryCodes maps the codes whose query-protocol name differs.
var queryCodes = map[string]string{
	QueueDoesNotExist:            "AWS.SimpleQueueService.NonExistentQueue",
	QueueNameExists:              "QueueAlreadyExists",
	MessageNotInflight:           "AWS.SimpleQueueService.MessageNotInflight",
	EmptyBatchRequest:            "AWS.SimpleQueueService.EmptyBatchRequest",
	TooManyEntriesInBatchRequest: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
	BatchEntryIdsNotDistinct:     "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
	InvalidBatchEntryId:          "AWS.SimpleQueueService.InvalidBatchEntryId",
	BatchRequestTooLong:          "AWS.SimpleQueueService.BatchRequestTooLong",
	UnsupportedOperation:         "AWS.SimpleQueueService.UnsupportedOperation",
}

// Error is an SQS error: a code from the table above, a message in the
// user's terms and the HTTP status.
type Error struct {
	Code    string
	Message string
	Status  int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// QueryCode is the error code the query protocol sends.
func (e *Error) QueryCode() string {
	if c, ok := queryCodes[e.Code]; ok {
		return c
	}
	return e.Code
}

// Sender reports whether the caller is at fault ("Sender" in the query
// protocol's error Type), as opposed to the server ("Receiver").
func (e *Error) Sender() bool { return e.Status < 500 }

// Errorf returns an *Error with status 400.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// AsError returns err's *Error, or an InternalError (500) for anything
// else, whose message never carries the inner error's text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: InternalError, Message: "We encountered an internal error. Please try again.", Status: http.StatusInternalServerError}
}

func noQueue() *Error {
	return Errorf(QueueDoesNotExist, "The specified queue does not exist.")
}

func badHandle(h string) *Error {
	if len(h) > 200 {
		h = h[:200] + "..."
	}
	return Errorf(ReceiptHandleIsInvalid, "The input receipt handle %q is not a valid receipt handle.", h)
}
