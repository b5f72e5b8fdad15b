package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

const testCapacityProvider = "arn:aws:lambda:us-east-1:000000000000:capacity-provider:flint"

func multiConcurrent(n int32) *types.CapacityProviderConfig {
	return &types.CapacityProviderConfig{
		LambdaManagedInstancesCapacityProviderConfig: &types.LambdaManagedInstancesCapacityProviderConfig{
			CapacityProviderArn:                   aws.String(testCapacityProvider),
			PerExecutionEnvironmentMaxConcurrency: aws.Int32(n),
		},
	}
}

// invokeAll runs the events at once and returns the outputs in order.
func invokeAll(t *testing.T, c *lambda.Client, name string, events []map[string]any) []*lambda.InvokeOutput {
	t.Helper()
	outs := make([]*lambda.InvokeOutput, len(events))
	errs := make([]error, len(events))
	var wg sync.WaitGroup
	for i, ev := range events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(ev)
			outs[i], errs[i] = c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Invoke %s: %v", name, err)
	}
	return outs
}

// TestMultiConcurrency: a function with Lambda Managed Instances'
// PerExecutionEnvironmentMaxConcurrency N runs up to N invocations at once
// in one sandbox (one aws-lambda-go process with N pollers), creates
// another sandbox only when every slot is taken, and times invocations
// out one by one without ending the sandbox.
func TestMultiConcurrency(t *testing.T) {
	requireRoot(t)
	s := startServer(t, t.TempDir())
	c := s.lambda()

	createGoFn(t, c, "multi", func(in *lambda.CreateFunctionInput) {
		in.Timeout = aws.Int32(2)
		in.CapacityProviderConfig = multiConcurrent(4)
	})
	cfg, err := c.GetFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("multi")})
	if err != nil {
		t.Fatal(err)
	}
	if mi := cfg.CapacityProviderConfig; mi == nil || mi.LambdaManagedInstancesCapacityProviderConfig == nil ||
		aws.ToInt32(mi.LambdaManagedInstancesCapacityProviderConfig.PerExecutionEnvironmentMaxConcurrency) != 4 ||
		aws.ToString(mi.LambdaManagedInstancesCapacityProviderConfig.CapacityProviderArn) != testCapacityProvider {
		t.Fatalf("GetFunctionConfiguration CapacityProviderConfig = %+v", cfg.CapacityProviderConfig)
	}

	env := asReply(t, invoke(t, c, "multi", map[string]any{"action": "env"}, false))
	if got := env.Env["AWS_LAMBDA_MAX_CONCURRENCY"]; got != "4" {
		t.Fatalf("AWS_LAMBDA_MAX_CONCURRENCY = %q, want 4", got)
	}
	first := env.Instance

	// Four at once share the warm sandbox and overlap in time.
	var evs []map[string]any
	for range 4 {
		evs = append(evs, map[string]any{"action": "sleep", "ms": 700})
	}
	var replies []goReply
	for _, out := range invokeAll(t, c, "multi", evs) {
		replies = append(replies, asReply(t, out))
	}
	for i, r := range replies {
		if r.Instance != first {
			t.Errorf("invocation %d ran in instance %s, want the one sandbox %s", i, r.Instance, first)
		}
		for j, o := range replies {
			if i != j && (r.StartMs >= o.EndMs || o.StartMs >= r.EndMs) {
				t.Errorf("invocations %d [%d,%d] and %d [%d,%d] did not overlap", i, r.StartMs, r.EndMs, j, o.StartMs, o.EndMs)
			}
		}
	}

	// One times out; the others in the same sandbox finish normally.
	outs := invokeAll(t, c, "multi", []map[string]any{
		{"action": "sleep", "ms": 3500, "name": "slow"},
		{"action": "sleep", "ms": 300},
		{"action": "sleep", "ms": 300},
	})
	if outs[0].FunctionError == nil {
		t.Fatalf("the slow invocation did not time out: %s", outs[0].Payload)
	}
	var doc errorDoc
	if err := json.Unmarshal(outs[0].Payload, &doc); err != nil || doc.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("timed-out payload = %s, want Sandbox.Timedout", outs[0].Payload)
	}
	for _, out := range outs[1:] {
		if r := asReply(t, out); r.Instance != first {
			t.Errorf("a neighbour of the timed-out invocation ran in %s, want %s", r.Instance, first)
		}
	}
	// The timed-out handler answers late (its answer is dropped); the
	// sandbox, and its process, live on.
	time.Sleep(2 * time.Second)
	if r := asReply(t, invoke(t, c, "multi", map[string]any{"action": "sleep", "ms": 1}, false)); r.Instance != first {
		t.Errorf("after a timeout the function ran in %s, want the same sandbox %s", r.Instance, first)
	}

	// Six at once with four slots: a second sandbox takes the rest, no
	// sandbox runs more than four.
	evs = nil
	for range 6 {
		evs = append(evs, map[string]any{"action": "sleep", "ms": 700})
	}
	perInstance := map[string]int{}
	for _, out := range invokeAll(t, c, "multi", evs) {
		perInstance[asReply(t, out).Instance]++
	}
	if len(perInstance) < 2 {
		t.Errorf("6 concurrent invocations with 4 slots ran in %d sandbox(es): %v", len(perInstance), perInstance)
	}
	for inst, n := range perInstance {
		if n > 4 {
			t.Errorf("sandbox %s ran %d invocations at once, more than its 4 slots", inst, n)
		}
	}
}

// TestMultiConcurrencyWide: more pollers than the driver's default bound on
// Runtime API connections (32) still all get a connection: 48 invocations
// run at once in one sandbox.
func TestMultiConcurrencyWide(t *testing.T) {
	requireRoot(t)
	s := startServer(t, t.TempDir())
	c := s.lambda()
	const n = 48
	createGoFn(t, c, "wide", func(in *lambda.CreateFunctionInput) {
		in.Timeout = aws.Int32(30)
		in.CapacityProviderConfig = multiConcurrent(n)
	})
	first := asReply(t, invoke(t, c, "wide", map[string]any{"action": "sleep", "ms": 1}, false)).Instance
	var evs []map[string]any
	for range n {
		evs = append(evs, map[string]any{"action": "sleep", "ms": 1500})
	}
	for i, out := range invokeAll(t, c, "wide", evs) {
		if r := asReply(t, out); r.Instance != first {
			t.Errorf("invocation %d ran in %s, want the one sandbox %s", i, r.Instance, first)
		}
	}
}

// TestMultiConcurrencyValidation: the setting is checked as Lambda's model
// says, and refused for runtimes whose client takes one event at a time.
func TestMultiConcurrencyValidation(t *testing.T) {
	requireRoot(t)
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createGoFn(t, c, "single", nil)

	for _, tc := range []struct {
		name string
		cfg  *types.CapacityProviderConfig
		want string
	}{
		{"too many", multiConcurrent(1601), "ValidationException"},
		{"zero", multiConcurrent(0), "ValidationException"},
		{"bad arn", &types.CapacityProviderConfig{LambdaManagedInstancesCapacityProviderConfig: &types.LambdaManagedInstancesCapacityProviderConfig{
			CapacityProviderArn: aws.String("arn:aws:lambda:us-east-1:000000000000:function:nope")}}, "ValidationException"},
	} {
		_, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("single"), CapacityProviderConfig: tc.cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %s", tc.name, err, tc.want)
		}
	}
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("single"), CapacityProviderConfig: multiConcurrent(1600)}); err != nil {
		t.Fatalf("PerExecutionEnvironmentMaxConcurrency 1600: %v", err)
	}
	// No runtime other than provided may then be chosen.
	_, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("single"), Runtime: types.RuntimePython311})
	if err == nil || !strings.Contains(err.Error(), "InvalidParameterValueException") || !strings.Contains(err.Error(), "AWS_LAMBDA_MAX_CONCURRENCY") {
		t.Errorf("python3.11 with multi-concurrency: err = %v, want InvalidParameterValueException", err)
	}
}
