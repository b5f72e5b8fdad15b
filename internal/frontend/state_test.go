package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
)

// gatedPreparer holds every preparation until released; fail makes them
// fail.
type gatedPreparer struct {
	mu      sync.Mutex
	release chan struct{}
	fail    error
	calls   int
}

func newGate() *gatedPreparer { return &gatedPreparer{release: make(chan struct{})} }

func (g *gatedPreparer) Prepare(ctx context.Context, fn *metadata.Function) error {
	g.mu.Lock()
	g.calls++
	rel, fail := g.release, g.fail
	g.mu.Unlock()
	select {
	case <-rel:
		return fail
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedPreparer) open() { close(g.release) }

func getState(t *testing.T, c *lambda.Client, name string) *types.FunctionConfiguration {
	t.Helper()
	out, err := c.GetFunction(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Configuration
}

// TestFunctionStatesThroughSDK: Pending until prepared, then Active; an
// update InProgress until prepared, then Successful; the SDK's waiters
// pass; an invocation of a Pending function waits for it.
func TestFunctionStatesThroughSDK(t *testing.T) {
	gate := newGate()
	e := newEnvWith(t, func(c *Config, _ *backbone.Backbone) { c.Preparer = gate })
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateFunction(ctx, createInput("stateful", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	cfg := getState(t, c, "stateful")
	if cfg.State != types.StatePending || cfg.StateReasonCode != types.StateReasonCodeCreating || aws.ToString(cfg.StateReason) == "" {
		t.Fatalf("before preparation: %s %s %q", cfg.State, cfg.StateReasonCode, aws.ToString(cfg.StateReason))
	}
	invoked := make(chan error, 1)
	go func() {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("stateful"), Payload: []byte(`{"x":1}`)})
		invoked <- err
	}()
	waited := make(chan error, 1)
	go func() {
		waited <- lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("stateful")}, 20*time.Second,
			func(o *lambda.FunctionActiveV2WaiterOptions) {
				o.MinDelay = 10 * time.Millisecond
				o.MaxDelay = 50 * time.Millisecond
			})
	}()
	select {
	case err := <-invoked:
		t.Fatalf("invocation of a Pending function returned before it was ready: %v", err)
	case err := <-waited:
		t.Fatalf("waiter returned before the function was ready: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	gate.open()
	if err := <-waited; err != nil {
		t.Fatalf("FunctionActiveV2 waiter: %v", err)
	}
	if err := <-invoked; err != nil {
		t.Fatalf("invocation once ready: %v", err)
	}
	if cfg := getState(t, c, "stateful"); cfg.State != types.StateActive || cfg.LastUpdateStatus != types.LastUpdateStatusSuccessful {
		t.Fatalf("after preparation: %s %s", cfg.State, cfg.LastUpdateStatus)
	}

	// An update is InProgress until prepared.
	gate.mu.Lock()
	gate.release = make(chan struct{})
	gate.mu.Unlock()
	up, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("stateful"), Timeout: aws.Int32(9)})
	if err != nil {
		t.Fatal(err)
	}
	if up.LastUpdateStatus != types.LastUpdateStatusInProgress || up.State != types.StateActive {
		t.Fatalf("update answered %s %s", up.State, up.LastUpdateStatus)
	}
	if cfg := getState(t, c, "stateful"); cfg.LastUpdateStatus != types.LastUpdateStatusInProgress {
		t.Fatalf("during the update: %s", cfg.LastUpdateStatus)
	}
	gate.open()
	if err := lambda.NewFunctionUpdatedV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("stateful")}, 20*time.Second,
		func(o *lambda.FunctionUpdatedV2WaiterOptions) {
			o.MinDelay = 10 * time.Millisecond
			o.MaxDelay = 50 * time.Millisecond
		}); err != nil {
		t.Fatalf("FunctionUpdatedV2 waiter: %v", err)
	}
	// Published versions are Active at once.
	v, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("stateful")})
	if err != nil || v.State != types.StateActive || v.LastUpdateStatus != types.LastUpdateStatusSuccessful {
		t.Fatalf("published %+v %v", v, err)
	}
}

// TestFunctionPreparationFails: a preparation that fails because of the
// function's code is State Failed; the waiter reports the failure and
// invocations are refused as Lambda does. A failure of the platform (a
// full disk) leaves the function Active: its code is prepared at the first
// cold start instead.
func TestFunctionPreparationFails(t *testing.T) {
	gate := newGate()
	gate.fail = lambdaerr.New(lambdaerr.InvalidZipFile, "the code package could not be unpacked")
	gate.open()
	e := newEnvWith(t, func(c *Config, _ *backbone.Backbone) { c.Preparer = gate })
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateFunction(ctx, createInput("doomed", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("doomed")}, 20*time.Second,
		func(o *lambda.FunctionActiveV2WaiterOptions) {
			o.MinDelay = 10 * time.Millisecond
			o.MaxDelay = 50 * time.Millisecond
		})
	if err == nil {
		t.Fatal("waiter passed for a failed function")
	}
	cfg := getState(t, c, "doomed")
	if cfg.State != types.StateFailed || cfg.StateReasonCode != types.StateReasonCodeInternalError {
		t.Fatalf("state %s %s %q", cfg.State, cfg.StateReasonCode, aws.ToString(cfg.StateReason))
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("doomed")}); apiCode(err) != "ResourceConflictException" {
		t.Fatalf("invoke of a Failed function: %v", err)
	}

	gate.mu.Lock()
	gate.fail = errors.New("write /var/lib/flint/code: no space left on device")
	gate.mu.Unlock()
	if _, err := c.CreateFunction(ctx, createInput("unlucky", zipOf(t, map[string]string{"bootstrap": "y"}))); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("unlucky")}, 20*time.Second,
		func(o *lambda.FunctionActiveV2WaiterOptions) {
			o.MinDelay = 10 * time.Millisecond
			o.MaxDelay = 50 * time.Millisecond
		}); err != nil {
		t.Fatalf("a platform failure of the preparation: %v", err)
	}
}

// TestPreparationResumedByRestore: a preparation cut short by a shutdown
// is finished by the next process's Restore.
func TestPreparationResumedByRestore(t *testing.T) {
	gate := newGate()
	var bb *backbone.Backbone
	e := newEnvWith(t, func(c *Config, b *backbone.Backbone) { c.Preparer = gate; bb = b })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.client.CreateFunction(ctx, createInput("resumed", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Close(ctx); err != nil { // cancels the held preparation
		t.Fatal(err)
	}
	if cfg := getState(t, e.client, "resumed"); cfg.State != types.StatePending {
		t.Fatalf("after shutdown: %s", cfg.State)
	}
	store, err := metadata.NewStore(ctx, bb.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	h2, err := New(Config{Functions: store, Code: e.code, Invoker: e.invoker, Runtimes: staticRuntimes{"provided.al2023"},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close(ctx)
	if err := h2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	polltest.Check(t, 10*time.Second, "the resumed preparation", func() error {
		f, err := store.Get(ctx, "000000000000", "resumed", metadata.LatestVersion)
		if err == nil && f.State != "Active" {
			err = fmt.Errorf("state %s", f.State)
		}
		return err
	})
}
