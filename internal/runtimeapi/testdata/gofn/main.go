// Command gofn is a test function for the runtimeapi tests, built with the
// real aws-lambda-go runtime client.
package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string `json:"action"`
	Value  string `json:"value"`
	Size   int    `json:"size"`
}

type reply struct {
	Value       string `json:"value,omitempty"`
	RequestID   string `json:"requestId,omitempty"`
	ARN         string `json:"arn,omitempty"`
	DeadlineMs  int64  `json:"deadlineMs,omitempty"`
	TraceEnv    string `json:"traceEnv,omitempty"`
	ClientEnv   string `json:"clientEnv,omitempty"`
	Big         string `json:"big,omitempty"`
	HasDeadline bool   `json:"hasDeadline,omitempty"`
}

type customError struct{ msg string }

func (e *customError) Error() string { return e.msg }

func handle(ctx context.Context, ev event) (*reply, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	switch ev.Action {
	case "echo":
		return &reply{Value: ev.Value}, nil
	case "error":
		return nil, &customError{msg: ev.Value}
	case "plainerror":
		return nil, errors.New(ev.Value)
	case "panic":
		panic(ev.Value)
	case "context":
		d, ok := ctx.Deadline()
		r := &reply{RequestID: lc.AwsRequestID, ARN: lc.InvokedFunctionArn, HasDeadline: ok,
			TraceEnv: os.Getenv("_X_AMZN_TRACE_ID")}
		if ok {
			r.DeadlineMs = d.UnixMilli()
		}
		if lc.ClientContext.Custom != nil {
			r.ClientEnv = lc.ClientContext.Custom["k"]
		}
		return r, nil
	case "big":
		return &reply{Big: strings.Repeat("x", ev.Size)}, nil
	case "sleep":
		time.Sleep(time.Hour)
	}
	return nil, errors.New("unknown action " + ev.Action)
}

func main() { lambda.Start(handle) }
