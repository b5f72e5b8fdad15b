package frontend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func createInput(name string, zip []byte) *lambda.CreateFunctionInput {
	return &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.RuntimeProvidedal2023,
		Role:         aws.String(testRole),
		Handler:      aws.String("bootstrap"),
		Code:         &types.FunctionCode{ZipFile: zip},
	}
}

func sha256b64(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func TestSDKLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	zip1 := zipOf(t, map[string]string{"bootstrap": "v1"})

	in := createInput("hello", zip1)
	in.Description = aws.String("says hello")
	in.MemorySize = aws.Int32(256)
	in.Environment = &types.Environment{Variables: map[string]string{"GREETING": "hi"}}
	created, err := c.CreateFunction(ctx, in)
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"FunctionName", aws.ToString(created.FunctionName), "hello"},
		{"FunctionArn", aws.ToString(created.FunctionArn), "arn:aws:lambda:us-east-1:000000000000:function:hello"},
		{"Runtime", created.Runtime, types.RuntimeProvidedal2023},
		{"Role", aws.ToString(created.Role), testRole},
		{"Handler", aws.ToString(created.Handler), "bootstrap"},
		{"CodeSize", created.CodeSize, int64(len(zip1))},
		{"CodeSha256", aws.ToString(created.CodeSha256), sha256b64(zip1)},
		{"Description", aws.ToString(created.Description), "says hello"},
		{"Timeout", aws.ToInt32(created.Timeout), int32(3)},
		{"MemorySize", aws.ToInt32(created.MemorySize), int32(256)},
		{"LastModified", aws.ToString(created.LastModified), "2026-03-04T05:06:07.890+0000"},
		{"Version", aws.ToString(created.Version), "$LATEST"},
		{"Environment", fmt.Sprint(created.Environment.Variables), "map[GREETING:hi]"},
		{"TracingConfig", created.TracingConfig.Mode, types.TracingModePassThrough},
		{"State", created.State, types.StatePending},
		{"StateReasonCode", created.StateReasonCode, types.StateReasonCodeCreating},
		{"LastUpdateStatus", created.LastUpdateStatus, types.LastUpdateStatus("")},
		{"PackageType", created.PackageType, types.PackageTypeZip},
		{"Architectures", fmt.Sprint(created.Architectures), "[x86_64]"},
		{"EphemeralStorage", aws.ToInt32(created.EphemeralStorage.Size), int32(512)},
		{"SnapStart", fmt.Sprint(created.SnapStart.ApplyOn, " ", created.SnapStart.OptimizationStatus), "None Off"},
		{"LoggingConfig", fmt.Sprint(created.LoggingConfig.LogFormat, " ", aws.ToString(created.LoggingConfig.LogGroup)), "Text /aws/lambda/hello"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("created %s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if len(aws.ToString(created.RevisionId)) != 36 {
		t.Errorf("RevisionId %q is not a UUID", aws.ToString(created.RevisionId))
	}
	// The SDK's waiter sees it become Active.
	if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")}, 20*time.Second); err != nil {
		t.Fatalf("FunctionActiveV2 waiter: %v", err)
	}

	// Create again: conflict.
	_, err = c.CreateFunction(ctx, createInput("hello", zip1))
	var conflict *types.ResourceConflictException
	if !errors.As(err, &conflict) || aws.ToString(conflict.Message) != "Function already exist: hello" {
		t.Fatalf("second CreateFunction = %v, want ResourceConflictException", err)
	}

	// Get, by name, partial ARN and full ARN.
	for _, name := range []string{"hello", "000000000000:function:hello", "arn:aws:lambda:us-east-1:000000000000:function:hello", "hello:$LATEST"} {
		got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatalf("GetFunction(%s): %v", name, err)
		}
		if aws.ToString(got.Configuration.RevisionId) != aws.ToString(created.RevisionId) || aws.ToString(got.Code.RepositoryType) != "S3" {
			t.Fatalf("GetFunction(%s) = %+v", name, got.Configuration)
		}
	}
	gc, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("hello"), Qualifier: aws.String("$LATEST")})
	if err != nil || aws.ToString(gc.CodeSha256) != sha256b64(zip1) {
		t.Fatalf("GetFunctionConfiguration = %v, %v", gc, err)
	}

	// Update code: new sha, new revision, sandboxes retired.
	zip2 := zipOf(t, map[string]string{"bootstrap": "v2"})
	uc, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zip2, RevisionId: created.RevisionId})
	if err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	if aws.ToString(uc.CodeSha256) != sha256b64(zip2) || aws.ToString(uc.RevisionId) == aws.ToString(created.RevisionId) || aws.ToInt32(uc.MemorySize) != 256 {
		t.Fatalf("UpdateFunctionCode = sha %s rev %s mem %d", aws.ToString(uc.CodeSha256), aws.ToString(uc.RevisionId), aws.ToInt32(uc.MemorySize))
	}
	if n := e.invoker.retiredCount("000000000000", "hello"); n != 1 {
		t.Fatalf("Retire called %d times after code update, want 1", n)
	}

	// Update configuration with the stale revision: 412, nothing changes.
	_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("hello"), Timeout: aws.Int32(30), RevisionId: created.RevisionId})
	var pre *types.PreconditionFailedException
	if !errors.As(err, &pre) {
		t.Fatalf("stale UpdateFunctionConfiguration = %v, want PreconditionFailedException", err)
	}
	ucfg, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("hello"), Timeout: aws.Int32(30), RevisionId: uc.RevisionId,
		Environment: &types.Environment{Variables: map[string]string{"A_B": "1"}}})
	if err != nil {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	if aws.ToInt32(ucfg.Timeout) != 30 || fmt.Sprint(ucfg.Environment.Variables) != "map[A_B:1]" ||
		aws.ToString(ucfg.CodeSha256) != sha256b64(zip2) || aws.ToString(ucfg.Description) != "says hello" {
		t.Fatalf("UpdateFunctionConfiguration = %+v", ucfg)
	}
	if n := e.invoker.retiredCount("000000000000", "hello"); n != 2 {
		t.Fatalf("Retire called %d times after config update, want 2", n)
	}

	// Invoke: payload echoed, headers, log tail.
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"x":1}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if out.StatusCode != 200 || string(out.Payload) != `{"x":1}` || aws.ToString(out.ExecutedVersion) != "$LATEST" || out.FunctionError != nil {
		t.Fatalf("Invoke = %d %s %s %v", out.StatusCode, out.Payload, aws.ToString(out.ExecutedVersion), out.FunctionError)
	}
	tail, err := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	if err != nil || len(tail) != maxLogTail {
		t.Fatalf("LogResult: %d bytes, err %v", len(tail), err)
	}
	e.invoker.mu.Lock()
	last := e.invoker.calls[len(e.invoker.calls)-1]
	lastFn := e.invoker.fns[len(e.invoker.fns)-1]
	e.invoker.mu.Unlock()
	if !strings.HasSuffix(string(tail), "REPORT RequestId: "+last.RequestID+"\n") {
		t.Fatalf("log tail does not end with the REPORT line of %s", last.RequestID)
	}
	if lastFn.Timeout != 30 || lastFn.CodeSha256 != sha256b64(zip2) || !strings.HasPrefix(last.TraceID, "Root=1-") {
		t.Fatalf("invoker got fn %+v trace %q", lastFn, last.TraceID)
	}

	// Function error.
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"fail":true}`)})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "boom") || out.LogResult != nil {
		t.Fatalf("failing Invoke = %+v, %v", out, err)
	}

	// Throttled: typed error with Reason and Retry-After.
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"throttle":1}`)})
	var tmr *types.TooManyRequestsException
	if !errors.As(err, &tmr) || tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded ||
		aws.ToString(tmr.RetryAfterSeconds) != "2" || aws.ToString(tmr.Message) != "Rate Exceeded." {
		t.Fatalf("throttled Invoke = %v (%+v)", err, tmr)
	}

	// Dry run and Event.
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || out.StatusCode != 204 {
		t.Fatalf("DryRun = %+v, %v", out, err)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"e":1}`)})
	if err != nil || out.StatusCode != 202 {
		t.Fatalf("Event = %+v, %v", out, err)
	}
	e.async.mu.Lock()
	queued := len(e.async.reqs) == 1 && string(e.async.reqs[0].Payload) == `{"e":1}`
	e.async.mu.Unlock()
	if !queued {
		t.Fatal("Event invocation was not enqueued")
	}

	// Delete, then everything is 404.
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
	if n := e.invoker.retiredCount("000000000000", "hello"); n != 3 {
		t.Fatalf("Retire called %d times after delete, want 3", n)
	}
	if fmt.Sprint(e.logs.purged) != "[000000000000/hello]" {
		t.Fatalf("logs purged = %v", e.logs.purged)
	}
	_, err = c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || aws.ToString(nf.Message) != "Function not found: arn:aws:lambda:us-east-1:000000000000:function:hello" {
		t.Fatalf("GetFunction after delete = %v", err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello")}); !errors.As(err, &nf) {
		t.Fatalf("Invoke after delete = %v", err)
	}
}

func TestSDKListPaged(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	zip := zipOf(t, map[string]string{"bootstrap": "x"})
	for _, n := range []string{"fn-c", "fn-a", "fn-e", "fn-b", "fn-d"} {
		if _, err := e.client.CreateFunction(ctx, createInput(n, zip)); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	p := lambda.NewListFunctionsPaginator(e.client, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	var names []string
	pages := 0
	for p.HasMorePages() && pages < 10 {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListFunctions page %d: %v", pages, err)
		}
		if len(page.Functions) > 2 {
			t.Fatalf("page of %d functions with MaxItems 2", len(page.Functions))
		}
		for _, f := range page.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
		pages++
	}
	if fmt.Sprint(names) != "[fn-a fn-b fn-c fn-d fn-e]" || pages != 3 {
		t.Fatalf("listed %v in %d pages", names, pages)
	}
	all, err := e.client.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(all.Functions) != 5 || all.NextMarker != nil {
		t.Fatalf("ListFunctions = %d functions, next %v, %v", len(all.Functions), all.NextMarker, err)
	}
}

// Concurrent configuration updates of different members both land: the
// store's optimistic concurrency re-applies the loser's change.
func TestSDKConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.client.CreateFunction(ctx, createInput("busy", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	const n = 6
	errs := make(chan error, 2*n)
	for i := range n {
		go func() {
			_, err := e.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
				FunctionName: aws.String("busy"), Timeout: aws.Int32(int32(10 + i))})
			errs <- err
		}()
		go func() {
			_, err := e.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
				FunctionName: aws.String("busy"), Description: aws.String(fmt.Sprintf("d%d", i))})
			errs <- err
		}()
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent update: %v", err)
		}
	}
	got, err := e.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("busy")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.Timeout) < 10 || !strings.HasPrefix(aws.ToString(got.Description), "d") {
		t.Fatalf("after concurrent updates: timeout %d description %q: an update was lost", aws.ToInt32(got.Timeout), aws.ToString(got.Description))
	}
}
