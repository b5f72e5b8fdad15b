package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestToolOperationsThroughSDK covers the operations infrastructure-as-code
// tools call for every function, and the unsupported ones.
func TestToolOperationsThroughSDK(t *testing.T) {
	e := newEnv(t)
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateFunction(ctx, createInput("tools", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:lambda:us-east-1:000000000000:function:tools"

	csc, err := c.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: aws.String("tools")})
	if err != nil || aws.ToString(csc.FunctionName) != "tools" || aws.ToString(csc.CodeSigningConfigArn) != "" {
		t.Fatalf("GetFunctionCodeSigningConfig %+v %v", csc, err)
	}
	if _, err := c.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: aws.String("nosuch")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("code signing config of a missing function: %v", err)
	}
	if _, err := c.PutFunctionCodeSigningConfig(ctx, &lambda.PutFunctionCodeSigningConfigInput{FunctionName: aws.String("tools"),
		CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0")}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("PutFunctionCodeSigningConfig: %v", err)
	}
	if _, err := c.DeleteFunctionCodeSigningConfig(ctx, &lambda.DeleteFunctionCodeSigningConfigInput{FunctionName: aws.String("tools")}); err != nil {
		t.Errorf("DeleteFunctionCodeSigningConfig: %v", err)
	}
	if _, err := c.ListFunctionsByCodeSigningConfig(ctx, &lambda.ListFunctionsByCodeSigningConfigInput{
		CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("ListFunctionsByCodeSigningConfig: %v", err)
	}

	rm, err := c.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: aws.String("tools")})
	if err != nil || rm.UpdateRuntimeOn != types.UpdateRuntimeOnAuto || aws.ToString(rm.FunctionArn) != arn+":$LATEST" {
		t.Fatalf("GetRuntimeManagementConfig %+v %v", rm, err)
	}
	prm, err := c.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: aws.String("tools"), UpdateRuntimeOn: types.UpdateRuntimeOnFunctionUpdate})
	if err != nil || prm.UpdateRuntimeOn != types.UpdateRuntimeOnFunctionUpdate {
		t.Fatalf("PutRuntimeManagementConfig %+v %v", prm, err)
	}
	if rm, err = c.GetRuntimeManagementConfig(ctx, &lambda.GetRuntimeManagementConfigInput{FunctionName: aws.String("tools")}); err != nil || rm.UpdateRuntimeOn != types.UpdateRuntimeOnFunctionUpdate {
		t.Fatalf("after put: %+v %v", rm, err)
	}
	if _, err := c.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: aws.String("tools"), UpdateRuntimeOn: types.UpdateRuntimeOnManual,
		RuntimeVersionArn: aws.String("arn:aws:lambda:us-east-1::runtime:abc")}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("Manual: %v", err)
	}
	if _, err := c.PutRuntimeManagementConfig(ctx, &lambda.PutRuntimeManagementConfigInput{FunctionName: aws.String("tools"), UpdateRuntimeOn: "Sometimes"}); apiCode(err) != "ValidationException" {
		t.Errorf("bad enum: %v", err)
	}

	rc, err := c.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("tools")})
	if err != nil || rc.RecursiveLoop != types.RecursiveLoopTerminate {
		t.Fatalf("GetFunctionRecursionConfig %+v %v", rc, err)
	}
	if prc, err := c.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: aws.String("tools"), RecursiveLoop: types.RecursiveLoopAllow}); err != nil || prc.RecursiveLoop != types.RecursiveLoopAllow {
		t.Fatalf("PutFunctionRecursionConfig %+v %v", prc, err)
	}
	if rc, err = c.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("tools")}); err != nil || rc.RecursiveLoop != types.RecursiveLoopAllow {
		t.Fatalf("after put: %+v %v", rc, err)
	}
	if _, err := c.PutFunctionRecursionConfig(ctx, &lambda.PutFunctionRecursionConfigInput{FunctionName: aws.String("tools"), RecursiveLoop: "Maybe"}); apiCode(err) != "ValidationException" {
		t.Errorf("bad enum: %v", err)
	}

	ia, err := c.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("tools"), InvokeArgs: strings.NewReader(`{"legacy":true}`)})
	if err != nil || ia.Status != 202 {
		t.Fatalf("InvokeAsync %+v %v", ia, err)
	}
	e.async.mu.Lock()
	n := len(e.async.reqs)
	last := e.async.reqs[n-1]
	e.async.mu.Unlock()
	if string(last.Payload) != `{"legacy":true}` || last.InvokedFunctionARN != arn {
		t.Fatalf("queued %+v", last)
	}
	if _, err := c.InvokeAsync(ctx, &lambda.InvokeAsyncInput{FunctionName: aws.String("nosuch"), InvokeArgs: strings.NewReader(`{}`)}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("InvokeAsync of a missing function: %v", err)
	}

	// Unsupported operations: typed errors or empty lists, never a 404 page.
	var rnf *types.ResourceNotFoundException
	if _, err := c.GetCodeSigningConfig(ctx, &lambda.GetCodeSigningConfigInput{
		CodeSigningConfigArn: aws.String("arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdef0")}); !errors.As(err, &rnf) {
		t.Errorf("GetCodeSigningConfig: %v", err)
	}
	if l, err := c.ListCodeSigningConfigs(ctx, &lambda.ListCodeSigningConfigsInput{}); err != nil || len(l.CodeSigningConfigs) != 0 {
		t.Errorf("ListCodeSigningConfigs: %+v %v", l, err)
	}
	if _, err := c.CreateCodeSigningConfig(ctx, &lambda.CreateCodeSigningConfigInput{AllowedPublishers: &types.AllowedPublishers{
		SigningProfileVersionArns: []string{"arn:aws:signer:us-east-1:000000000000:/signing-profiles/p/v"}}}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("CreateCodeSigningConfig: %v", err)
	}
	if l, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("tools")}); err != nil || len(l.FunctionUrlConfigs) != 0 {
		t.Errorf("ListFunctionUrlConfigs: %+v %v", l, err)
	}
}

// TestUnsupportedTableAnswersJSON sends every operation of the table and
// checks the answer is Lambda's shape.
func TestUnsupportedTableAnswersJSON(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h) // every path to the frontend, as the server mounts it
	defer srv.Close()
	for _, u := range unsupportedOps {
		path := strings.ReplaceAll(u.pattern, "*", "x")
		req, _ := http.NewRequest(u.method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Errorf("%s %s (%s): not JSON: %v", u.method, path, u.op, err)
			continue
		}
		switch {
		case u.list != "":
			if resp.StatusCode != 200 || body[u.list] == nil {
				t.Errorf("%s: %d %v", u.op, resp.StatusCode, body)
			}
		case u.notFound != "":
			if resp.StatusCode != 404 || resp.Header.Get("X-Amzn-ErrorType") != "ResourceNotFoundException" {
				t.Errorf("%s: %d %v", u.op, resp.StatusCode, body)
			}
		default:
			if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "InvalidParameterValueException" || !strings.Contains(body["message"].(string), u.op) {
				t.Errorf("%s: %d %v", u.op, resp.StatusCode, body)
			}
		}
	}
}

// implementedOps are the operations of aws-sdk-go-v2's Lambda client that
// the frontend serves. layerOps are served by the layer routes.
var (
	implementedOps = []string{
		"CreateFunction", "GetFunction", "GetFunctionConfiguration", "ListFunctions", "DeleteFunction",
		"UpdateFunctionCode", "UpdateFunctionConfiguration", "Invoke", "InvokeAsync",
		"PublishVersion", "ListVersionsByFunction", "CreateAlias", "GetAlias", "UpdateAlias", "DeleteAlias", "ListAliases",
		"GetAccountSettings", "PutFunctionConcurrency", "GetFunctionConcurrency", "DeleteFunctionConcurrency",
		"PutProvisionedConcurrencyConfig", "GetProvisionedConcurrencyConfig", "DeleteProvisionedConcurrencyConfig", "ListProvisionedConcurrencyConfigs",
		"PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig",
		"DeleteFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs",
		"TagResource", "UntagResource", "ListTags", "AddPermission", "GetPolicy", "RemovePermission",
		"CreateFunctionUrlConfig", "GetFunctionUrlConfig", "UpdateFunctionUrlConfig", "DeleteFunctionUrlConfig", "ListFunctionUrlConfigs",
		"InvokeWithResponseStream", "CreateEventSourceMapping", "GetEventSourceMapping", "UpdateEventSourceMapping",
		"DeleteEventSourceMapping", "ListEventSourceMappings",
		"GetFunctionCodeSigningConfig", "DeleteFunctionCodeSigningConfig",
		"GetRuntimeManagementConfig", "PutRuntimeManagementConfig", "GetFunctionRecursionConfig", "PutFunctionRecursionConfig",
	}
	layerOps = []string{"PublishLayerVersion", "GetLayerVersion", "GetLayerVersionByArn", "ListLayers", "ListLayerVersions",
		"DeleteLayerVersion", "AddLayerVersionPermission", "RemoveLayerVersionPermission", "GetLayerVersionPolicy"}
)

// TestEveryOperationAccountedFor: every operation the SDK's client knows is
// implemented, a layer operation, or in the unsupported table.
func TestEveryOperationAccountedFor(t *testing.T) {
	known := map[string]string{}
	for _, op := range implementedOps {
		known[op] = "implemented"
	}
	for _, op := range layerOps {
		known[op] = "layers"
	}
	for _, u := range unsupportedOps {
		known[u.op] = "unsupported"
	}
	ct := reflect.TypeOf(&lambda.Client{})
	n := 0
	for i := range ct.NumMethod() {
		m := ct.Method(i)
		if m.Name == "Options" || m.Type.NumIn() < 3 || m.Type.In(1) != reflect.TypeOf((*context.Context)(nil)).Elem() {
			continue
		}
		n++
		if known[m.Name] == "" {
			t.Errorf("operation %s is not accounted for", m.Name)
		}
	}
	if n < 80 {
		t.Fatalf("found only %d operations on the SDK client", n)
	}
}
