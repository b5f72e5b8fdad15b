package frontend

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestReservedConcurrencyThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newManagerEnv(t, 1000)
	c := e.client
	e.create(t, "slow")
	e.create(t, "other")

	// Lambda keeps 100 unreserved: 901 is refused, 900 accepted.
	_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"), ReservedConcurrentExecutions: aws.Int32(901)})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("reserve 901 of 1000: %v", err)
	}
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("other"), ReservedConcurrentExecutions: aws.Int32(900)}); err != nil {
		t.Fatal(err)
	}
	settings, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if l := settings.AccountLimit; l.ConcurrentExecutions != 1000 || aws.ToInt32(l.UnreservedConcurrentExecutions) != 100 ||
		l.CodeSizeZipped != 52428800 || settings.AccountUsage.FunctionCount != 2 || settings.AccountUsage.TotalCodeSize == 0 {
		t.Fatalf("account settings %+v %+v", *settings.AccountLimit, *settings.AccountUsage)
	}
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("other")}); err != nil {
		t.Fatal(err)
	}

	put, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"), ReservedConcurrentExecutions: aws.Int32(2)})
	if err != nil || aws.ToInt32(put.ReservedConcurrentExecutions) != 2 {
		t.Fatalf("PutFunctionConcurrency = %+v, %v", put, err)
	}
	got, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("slow")})
	if err != nil || aws.ToInt32(got.ReservedConcurrentExecutions) != 2 {
		t.Fatalf("GetFunctionConcurrency = %+v, %v", got, err)
	}
	fn, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("slow")})
	if err != nil || fn.Concurrency == nil || aws.ToInt32(fn.Concurrency.ReservedConcurrentExecutions) != 2 {
		t.Fatalf("GetFunction Concurrency = %+v, %v", fn.Concurrency, err)
	}

	e.srv.Client().CloseIdleConnections()
	e.srv.CloseClientConnections()
	base := runtime.NumGoroutine()
	hold := make(chan struct{})
	e.host.hold.Store(&hold)
	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(fmt.Sprint(i))})
			errs <- err
		}()
	}
	// Two reach a sandbox and are held there; the other 18 are refused
	// while those two are still held, so none of them waited.
	for range 2 {
		select {
		case <-e.host.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the admitted invocations did not reach a sandbox")
		}
	}
	for i := range n - 2 {
		select {
		case err := <-errs:
			var tm *types.TooManyRequestsException
			if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
				t.Fatalf("refusal %d: %v", i, err)
			}
			if aws.ToString(tm.RetryAfterSeconds) == "" {
				t.Fatalf("refusal %d without Retry-After", i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d refusals while the admitted invocations were held", i)
		}
	}
	if e.host.maxFlight.Load() != 2 {
		t.Fatalf("max concurrency %d, want 2", e.host.maxFlight.Load())
	}
	e.host.hold.Store(nil)
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("admitted invocation: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		e.srv.Client().CloseIdleConnections()
		e.srv.CloseClientConnections()
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d, baseline %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Reserved 0 disables the function; deleting the setting enables it.
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow")})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Fatalf("invoke with reserved 0: %v", err)
	}
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("slow")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow")}); err != nil {
		t.Fatalf("invoke after DeleteFunctionConcurrency: %v", err)
	}
	got, err = c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("slow")})
	if err != nil || got.ReservedConcurrentExecutions != nil {
		t.Fatalf("GetFunctionConcurrency after delete = %+v, %v", got, err)
	}
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("nope"), ReservedConcurrentExecutions: aws.Int32(1)}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("reserve for a missing function: %v", err)
	}
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"), ReservedConcurrentExecutions: aws.Int32(-1)}); apiCode(err) != "ValidationException" {
		t.Fatalf("reserve -1: %v", err)
	}
}

func TestAccountLimitThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newManagerEnv(t, 3)
	e.create(t, "f")
	hold := make(chan struct{})
	e.host.hold.Store(&hold)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f")}); err != nil {
				t.Error(err)
			}
		}()
	}
	for range 3 {
		<-e.host.entered
	}
	_, err := e.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f")})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonConcurrentInvocationLimitExceeded {
		t.Fatalf("fourth invocation with an account limit of 3: %v", err)
	}
	e.host.hold.Store(nil)
	close(hold)
	wg.Wait()
	// With a limit of 3, no reservation leaves the minimum unreserved.
	_, err = e.client.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("f"), ReservedConcurrentExecutions: aws.Int32(1)})
	if apiCode(err) != "InvalidParameterValueException" {
		t.Fatalf("reserve 1 of 3: %v", err)
	}
}

func TestProvisionedConcurrencyThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newManagerEnv(t, 1000)
	c := e.client
	e.create(t, "warm")
	v, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("warm")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("warm"), Name: aws.String("live"), FunctionVersion: v.Version}); err != nil {
		t.Fatal(err)
	}
	_, err = c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("warm"), Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(1)})
	if apiCode(err) != "InvalidParameterValueException" {
		t.Fatalf("provisioned $LATEST: %v", err)
	}
	const n = 3
	put, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("warm"), Qualifier: aws.String("live"), ProvisionedConcurrentExecutions: aws.Int32(n)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(put.RequestedProvisionedConcurrentExecutions) != n || put.Status == "" {
		t.Fatalf("put = %+v", put)
	}
	// The version and its alias cannot both be provisioned.
	_, err = c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("warm"), Qualifier: v.Version, ProvisionedConcurrentExecutions: aws.Int32(1)})
	if apiCode(err) != "ResourceConflictException" {
		t.Fatalf("provisioning the alias's version too: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var got *lambda.GetProvisionedConcurrencyConfigOutput
	for {
		got, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("warm"), Qualifier: aws.String("live")})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == types.ProvisionedConcurrencyStatusEnumReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not READY: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if aws.ToInt32(got.AllocatedProvisionedConcurrentExecutions) != n || aws.ToInt32(got.AvailableProvisionedConcurrentExecutions) != n {
		t.Fatalf("ready = %+v", got)
	}
	sbs := e.host.created()
	if len(sbs) != n {
		t.Fatalf("%d sandboxes before the first invocation, want %d", len(sbs), n)
	}
	for _, sb := range sbs {
		if sb.inits.Load() != 1 || sb.fn.Version != "1" {
			t.Fatalf("sandbox %s: inits %d, version %s", sb.id, sb.inits.Load(), sb.fn.Version)
		}
	}
	// n concurrent invocations of the alias all land on warm sandboxes.
	hold := make(chan struct{})
	e.host.hold.Store(&hold)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("warm:live")})
			if err != nil || aws.ToString(out.ExecutedVersion) != "1" {
				t.Errorf("invoke: %+v, %v", out, err)
			}
		}()
	}
	for range n {
		<-e.host.entered
	}
	e.host.hold.Store(nil)
	close(hold)
	wg.Wait()
	if st := e.m.Stats(); st.ColdStarts != 0 || len(e.host.created()) != n {
		t.Fatalf("after %d invocations: %d cold starts, %d sandboxes", n, st.ColdStarts, len(e.host.created()))
	}

	list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("warm")})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 ||
		aws.ToString(list.ProvisionedConcurrencyConfigs[0].FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:warm:live" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String("warm"), Qualifier: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("warm"), Qualifier: aws.String("live")})
	var nf *types.ProvisionedConcurrencyConfigNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("get after delete: %v", err)
	}

	// Restore after a "restart": a new manager-less view of the same
	// store pushes the stored settings to a controller.
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("warm"), ReservedConcurrentExecutions: aws.Int32(5)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("warm"), Qualifier: aws.String("1"), ProvisionedConcurrentExecutions: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingController{}
	h2, err := New(Config{Functions: e.store, Code: &memCode{}, Invoker: &echoInvoker{}, Runtimes: staticRuntimes{}, Concurrency: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rec.calls) != "[reserved warm 5 provisioned warm:1 2]" {
		t.Fatalf("restored %v", rec.calls)
	}

	// Deleting the function stops its provisioned concurrency and frees
	// every sandbox.
	v1, err := e.store.Get(ctx, "000000000000", "warm", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.ProvisionedConcurrency(v1); !ok {
		t.Fatal("version 1 is not provisioned in the manager")
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("warm")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.ProvisionedConcurrency(v1); ok {
		t.Fatal("provisioned concurrency survived DeleteFunction")
	}
	deadline = time.Now().Add(10 * time.Second)
	for st := e.m.Stats(); st.Idle+st.Busy+st.Creating > 0; st = e.m.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes left after DeleteFunction: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
