// Command gofn is an unmodified-style aws-lambda-go function used by Flint's
// end-to-end tests. The event's "action" picks what it does.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// buildMark is set with -ldflags "-X main.buildMark=..." so tests can tell
// code versions apart.
var buildMark = "v1"

// instance identifies this process: sandboxes have their own pid namespace,
// so pids do not tell them apart.
var instance = func() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// invocations counts the invocations this process served: a warm sandbox
// reports 2, 3, ... on later calls (atomic: a multi-concurrent sandbox runs
// several handlers at once).
var invocations atomic.Int64

type event struct {
	Action string `json:"action"`
	Name   string `json:"name"`
	Ms     int    `json:"ms"`
	Key    string `json:"key"`
	Lines  int    `json:"lines"`
}

type reply struct {
	Hello       string            `json:"hello,omitempty"`
	RequestID   string            `json:"requestId"`
	FunctionArn string            `json:"functionArn"`
	Invocations int               `json:"invocations"`
	Pid         int               `json:"pid"`
	RemainingMs int64             `json:"remainingMs"`
	Env         map[string]string `json:"env,omitempty"`
	Version     string            `json:"version"`
	Build       string            `json:"build"`
	Instance    string            `json:"instance"`
	StartMs     int64             `json:"startMs"` // wall clock when the handler started
	EndMs       int64             `json:"endMs"`   // and when it returned
	// ClientCustom and ClientApp come from the invocation's ClientContext.
	ClientCustom map[string]string `json:"clientCustom,omitempty"`
	ClientApp    string            `json:"clientApp,omitempty"`
}

func handle(ctx context.Context, ev event) (r reply, err error) {
	served := invocations.Add(1)
	start := time.Now()
	lc, _ := lambdacontext.FromContext(ctx)
	dl, _ := ctx.Deadline()
	r = reply{
		RequestID:    lc.AwsRequestID,
		FunctionArn:  lc.InvokedFunctionArn,
		Invocations:  int(served),
		Pid:          os.Getpid(),
		RemainingMs:  time.Until(dl).Milliseconds(),
		Version:      os.Getenv("VERSION_MARK"),
		Build:        buildMark,
		Instance:     instance,
		StartMs:      start.UnixMilli(),
		ClientCustom: lc.ClientContext.Custom,
		ClientApp:    lc.ClientContext.Client.AppTitle,
	}
	defer func() { r.EndMs = time.Now().UnixMilli() }()
	switch ev.Action {
	case "error":
		return r, errors.New("boom: " + ev.Name)
	case "panic":
		panic("panic: " + ev.Name)
	case "exit":
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Duration(ev.Ms) * time.Millisecond)
	case "env":
		r.Env = map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			r.Env[k] = v
		}
	case "print":
		for i := 0; i < ev.Lines; i++ {
			fmt.Printf("line %d of %d\n", i+1, ev.Lines)
		}
	case "alloc":
		// Touch ev.Ms megabytes.
		b := make([]byte, ev.Ms<<20)
		for i := range b {
			b[i] = 1
		}
		r.Hello = fmt.Sprint(len(b))
	}
	fmt.Println("handled", ev.Action, "for", ev.Name)
	if r.Hello == "" {
		r.Hello = ev.Name
	}
	return r, nil
}

func main() { lambda.Start(handle) }
