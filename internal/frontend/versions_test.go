package frontend

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func TestVersionsThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	zip1 := zipOf(t, map[string]string{"bootstrap": "v1"})
	zip2 := zipOf(t, map[string]string{"bootstrap": "v2"})

	in := createInput("ver", zip1)
	in.Publish = true
	created, err := c.CreateFunction(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(created.Version) != "1" || aws.ToString(created.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:ver:1" {
		t.Fatalf("CreateFunction with Publish: version %s arn %s", aws.ToString(created.Version), aws.ToString(created.FunctionArn))
	}
	// Nothing changed: PublishVersion returns version 1 again.
	again, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("ver")})
	if err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("publish unchanged = %v, %v", aws.ToString(again.Version), err)
	}
	// Update $LATEST's code and configuration.
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("ver"), ZipFile: zip2}); err != nil {
		t.Fatal(err)
	}
	latest, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("ver"), MemorySize: aws.Int32(512)})
	if err != nil {
		t.Fatal(err)
	}
	// Preconditions of PublishVersion.
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("ver"), CodeSha256: aws.String(sha256b64(zip1))})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) || !strings.Contains(aws.ToString(ipv.Message), "CodeSHA256") {
		t.Fatalf("publish with stale CodeSha256: %v", err)
	}
	_, err = c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("ver"), RevisionId: aws.String("stale")})
	var pf *types.PreconditionFailedException
	if !errors.As(err, &pf) {
		t.Fatalf("publish with stale RevisionId: %v", err)
	}
	v2, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("ver"), CodeSha256: aws.String(sha256b64(zip2)),
		RevisionId: latest.RevisionId, Description: aws.String("second")})
	if err != nil || aws.ToString(v2.Version) != "2" || aws.ToString(v2.Description) != "second" || aws.ToInt32(v2.MemorySize) != 512 {
		t.Fatalf("publish 2 = %+v, %v", v2, err)
	}

	// Version 1 still is what it was.
	g1, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("ver"), Qualifier: aws.String("1")})
	if err != nil || aws.ToString(g1.CodeSha256) != sha256b64(zip1) || aws.ToInt32(g1.MemorySize) != 128 {
		t.Fatalf("version 1 = %+v, %v", g1, err)
	}
	gf, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("ver:2")})
	if err != nil || aws.ToString(gf.Configuration.Version) != "2" {
		t.Fatalf("GetFunction ver:2 = %+v, %v", gf, err)
	}

	list, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("ver")})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, v := range list.Versions {
		order = append(order, aws.ToString(v.Version))
	}
	if strings.Join(order, ",") != "$LATEST,1,2" || aws.ToString(list.Versions[0].FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:ver:$LATEST" {
		t.Fatalf("versions = %v", order)
	}
	page1, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("ver"), MaxItems: aws.Int32(2)})
	if err != nil || len(page1.Versions) != 2 || aws.ToString(page1.NextMarker) == "" {
		t.Fatalf("page 1 = %+v, %v", page1, err)
	}
	page2, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("ver"), Marker: page1.NextMarker})
	if err != nil || len(page2.Versions) != 1 || aws.ToString(page2.Versions[0].Version) != "2" || page2.NextMarker != nil {
		t.Fatalf("page 2 = %+v, %v", page2, err)
	}

	// Invoking a version runs that version's snapshot.
	for _, tc := range []struct{ name, qualifier, version, sha string }{
		{"ver", "1", "1", sha256b64(zip1)},
		{"ver:2", "", "2", sha256b64(zip2)},
		{"ver", "", "$LATEST", sha256b64(zip2)},
	} {
		in := &lambda.InvokeInput{FunctionName: aws.String(tc.name), Payload: []byte(`{}`)}
		if tc.qualifier != "" {
			in.Qualifier = aws.String(tc.qualifier)
		}
		out, err := c.Invoke(ctx, in)
		if err != nil || aws.ToString(out.ExecutedVersion) != tc.version {
			t.Fatalf("invoke %s %s: %+v, %v", tc.name, tc.qualifier, out, err)
		}
		e.invoker.mu.Lock()
		fn := e.invoker.fns[len(e.invoker.fns)-1]
		e.invoker.mu.Unlock()
		if fn.Version != tc.version || fn.CodeSha256 != tc.sha {
			t.Fatalf("invoke %s %s ran version %s code %s, want %s %s", tc.name, tc.qualifier, fn.Version, fn.CodeSha256, tc.version, tc.sha)
		}
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("ver"), Qualifier: aws.String("9")}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("invoke version 9: %v", err)
	}

	all, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{FunctionVersion: types.FunctionVersionAll})
	if err != nil || len(all.Functions) != 3 || aws.ToString(all.Functions[2].FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:ver:2" {
		t.Fatalf("ListFunctions ALL = %d functions, %v", len(all.Functions), err)
	}

	// UpdateFunctionCode with Publish publishes version 3.
	zip3 := zipOf(t, map[string]string{"bootstrap": "v3"})
	v3, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("ver"), ZipFile: zip3, Publish: true})
	if err != nil || aws.ToString(v3.Version) != "3" || aws.ToString(v3.CodeSha256) != sha256b64(zip3) {
		t.Fatalf("update code with Publish = %+v, %v", v3, err)
	}

	// A version an alias points to cannot be deleted; others can.
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("ver"), Name: aws.String("prod"), FunctionVersion: aws.String("2")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("ver"), Qualifier: aws.String("2")})
	var rc *types.ResourceConflictException
	if !errors.As(err, &rc) || !strings.Contains(aws.ToString(rc.Message), "prod") {
		t.Fatalf("delete version 2 with an alias: %v", err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("ver"), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("ver:1")}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("deleted version 1: %v", err)
	}
	if _, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("ver")}); err != nil {
		t.Fatalf("deleting version 1 deleted the function: %v", err)
	}
}

// TestUpdateLatestKeepsVersionSandboxes: with the real Worker Manager,
// updating $LATEST retires $LATEST's sandboxes only.
func TestUpdateLatestKeepsVersionSandboxes(t *testing.T) {
	ctx := context.Background()
	e := newManagerEnv(t, 1000)
	c := e.client
	e.create(t, "keep")
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("keep")}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"1", "$LATEST"} {
		if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("keep"), Qualifier: aws.String(q)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("keep"), Timeout: aws.Int32(9)}); err != nil {
		t.Fatal(err)
	}
	st := e.m.Stats()
	if st.Idle != 1 {
		t.Fatalf("after updating $LATEST: %+v, want version 1's sandbox only", st)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("keep"), Qualifier: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if got := e.m.Stats().ColdStarts; got != 2 {
		t.Fatalf("cold starts %d: version 1's sandbox was not kept warm", got)
	}
}

func TestAliasesThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	if _, err := c.CreateFunction(ctx, createInput("al", zipOf(t, map[string]string{"bootstrap": "1"}))); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("al"), Timeout: aws.Int32(int32(10 + i))}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("al")}); err != nil {
			t.Fatal(err)
		}
	}
	const arn = "arn:aws:lambda:us-east-1:000000000000:function:al:live"
	created, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("al"), Name: aws.String("live"),
		FunctionVersion: aws.String("1"), Description: aws.String("prod traffic")})
	if err != nil || aws.ToString(created.AliasArn) != arn || aws.ToString(created.FunctionVersion) != "1" || len(aws.ToString(created.RevisionId)) != 36 {
		t.Fatalf("CreateAlias = %+v, %v", created, err)
	}
	bad := []struct {
		name string
		in   *lambda.CreateAliasInput
		code string
	}{
		{"duplicate", &lambda.CreateAliasInput{Name: aws.String("live"), FunctionVersion: aws.String("1")}, "ResourceConflictException"},
		{"numeric name", &lambda.CreateAliasInput{Name: aws.String("123"), FunctionVersion: aws.String("1")}, "ValidationException"},
		{"missing version", &lambda.CreateAliasInput{Name: aws.String("x"), FunctionVersion: aws.String("7")}, "ResourceNotFoundException"},
		{"weight over 1", &lambda.CreateAliasInput{Name: aws.String("x"), FunctionVersion: aws.String("1"),
			RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 1.5}}}, "ValidationException"},
		{"routed $LATEST", &lambda.CreateAliasInput{Name: aws.String("x"), FunctionVersion: aws.String("$LATEST"),
			RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.5}}}, "InvalidParameterValueException"},
	}
	for _, b := range bad {
		b.in.FunctionName = aws.String("al")
		if _, err := c.CreateAlias(ctx, b.in); apiCode(err) != b.code {
			t.Errorf("%s: %v, want %s", b.name, err, b.code)
		}
	}

	got, err := c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("al"), Name: aws.String("live")})
	if err != nil || aws.ToString(got.Description) != "prod traffic" {
		t.Fatalf("GetAlias = %+v, %v", got, err)
	}
	_, err = c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("al"), Name: aws.String("live"), RevisionId: aws.String("stale"), FunctionVersion: aws.String("2")})
	var pf *types.PreconditionFailedException
	if !errors.As(err, &pf) {
		t.Fatalf("UpdateAlias with a stale RevisionId: %v", err)
	}
	const weight = 0.3
	up, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("al"), Name: aws.String("live"), RevisionId: got.RevisionId,
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": weight}}})
	if err != nil || up.RoutingConfig == nil || up.RoutingConfig.AdditionalVersionWeights["2"] != weight || aws.ToString(up.RevisionId) == aws.ToString(got.RevisionId) {
		t.Fatalf("UpdateAlias = %+v, %v", up, err)
	}
	// GetFunction through the alias: the primary version, the alias's ARN.
	gf, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("al"), Qualifier: aws.String("live")})
	if err != nil || aws.ToString(gf.Version) != "1" || aws.ToString(gf.FunctionArn) != arn {
		t.Fatalf("configuration through the alias = %+v, %v", gf, err)
	}

	// Weighted routing: n invocations land on version 2 with probability
	// 0.3, within 5 standard deviations.
	const n = 1000
	counts := map[string]int{}
	for range n {
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("al:live"), Payload: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		counts[aws.ToString(out.ExecutedVersion)]++
	}
	sigma := math.Sqrt(n * weight * (1 - weight))
	if len(counts) != 2 || math.Abs(float64(counts["2"])-n*weight) > 5*sigma {
		t.Fatalf("routing %v: want about %v on version 2 (±%.0f)", counts, n*weight, 5*sigma)
	}
	e.invoker.mu.Lock()
	for _, fn := range e.invoker.fns[len(e.invoker.fns)-n:] {
		if want := map[string]int{"1": 10, "2": 11}[fn.Version]; fn.Timeout != want {
			t.Errorf("version %s ran with timeout %d, want %d", fn.Version, fn.Timeout, want)
		}
	}
	e.invoker.mu.Unlock()

	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("al"), Name: aws.String("beta"), FunctionVersion: aws.String("$LATEST")}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("al")})
	if err != nil || len(list.Aliases) != 2 || aws.ToString(list.Aliases[0].Name) != "beta" {
		t.Fatalf("ListAliases = %+v, %v", list, err)
	}
	list, err = c.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("al"), FunctionVersion: aws.String("2")})
	if err != nil || len(list.Aliases) != 1 || aws.ToString(list.Aliases[0].Name) != "live" {
		t.Fatalf("ListAliases for version 2 = %+v, %v", list, err)
	}
	if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("al"), Name: aws.String("beta")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("al"), Name: aws.String("beta")}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("deleted alias: %v", err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("al:beta")}); apiCode(err) != "ResourceNotFoundException" {
		t.Fatalf("invoke deleted alias: %v", err)
	}
}

func TestDeadLetterConfigThroughSDK(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	const queue = "arn:aws:sqs:us-east-1:000000000000:failed-events"
	in := createInput("dlq", zipOf(t, map[string]string{"bootstrap": "x"}))
	in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(queue)}
	created, err := c.CreateFunction(ctx, in)
	if err != nil || created.DeadLetterConfig == nil || aws.ToString(created.DeadLetterConfig.TargetArn) != queue {
		t.Fatalf("CreateFunction with a DLQ = %+v, %v", created.DeadLetterConfig, err)
	}
	const fnTarget = "arn:aws:lambda:us-east-1:000000000000:function:catcher"
	up, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("dlq"),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(fnTarget)}})
	if err != nil || aws.ToString(up.DeadLetterConfig.TargetArn) != fnTarget {
		t.Fatalf("update DLQ = %+v, %v", up, err)
	}
	for _, bad := range []string{"arn:aws:sns:us-east-1:000000000000:t", "arn:aws:sqs:us-east-1:12:q", "arn:aws:lambda:us-east-1:000000000000:layer:x", "queue"} {
		_, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("dlq"),
			DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(bad)}})
		if apiCode(err) != "InvalidParameterValueException" {
			t.Errorf("target %s: %v", bad, err)
		}
	}
	cleared, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("dlq"),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("")}})
	if err != nil || cleared.DeadLetterConfig != nil {
		t.Fatalf("cleared DLQ = %+v, %v", cleared.DeadLetterConfig, err)
	}
	stored, err := e.store.Get(ctx, "000000000000", "dlq", "$LATEST")
	if err != nil || stored.DeadLetterTargetArn != "" {
		t.Fatalf("stored DLQ %q, %v", stored.DeadLetterTargetArn, err)
	}
}

func TestNewRoutes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{"GET", "/2016-08-19/account-settings", 200, ""},
		{"GET", "/2016-08-19/account-settings/x", 404, "UnknownOperationException"},
		{"GET", "/2017-10-31/functions/missing/concurrency", 404, "ResourceNotFoundException"},
		{"GET", "/2017-10-31/functions/missing/code", 404, "UnknownOperationException"},
		{"POST", "/2019-09-30/functions/missing/concurrency", 405, "MethodNotAllowedException"},
		{"GET", "/2015-03-31/functions/missing/provisioned-concurrency", 404, "UnknownOperationException"},
		{"GET", "/2019-09-30/functions/missing/provisioned-concurrency", 400, "ValidationException"},
		{"GET", "/2019-09-30/functions/missing/provisioned-concurrency?Qualifier=1", 404, "ResourceNotFoundException"},
		{"GET", "/2015-03-31/functions/missing/aliases/a/b", 404, "UnknownOperationException"},
		{"GET", "/2015-03-31/functions/missing/versions/1", 404, "UnknownOperationException"},
		{"DELETE", "/2015-03-31/functions/missing/aliases", 405, "MethodNotAllowedException"},
		{"GET", "/2015-03-31/functions/missing/aliases/123", 400, "ValidationException"},
	} {
		req, err := http.NewRequest(tc.method, e.srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-ErrorType") != tc.typ {
			t.Errorf("%s %s = %d %s, want %d %s (%s)", tc.method, tc.path, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tc.status, tc.typ, body)
		}
	}
}
