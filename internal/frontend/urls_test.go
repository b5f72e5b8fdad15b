package frontend

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// TestSDKFunctionURLConfigs drives the URL config operations with the Go
// SDK: shapes, qualifiers, and Lambda's errors.
func TestSDKFunctionURLConfigs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("nope"), AuthType: types.FunctionUrlAuthTypeNone}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("create for a missing function: %v", err)
	}
	if _, err := c.CreateFunction(ctx, createInput("web", zipOf(t, map[string]string{"bootstrap": "v1"}))); err != nil {
		t.Fatal(err)
	}
	out, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"),
		AuthType: types.FunctionUrlAuthTypeAwsIam, InvokeMode: types.InvokeModeResponseStream,
		Cors: &types.Cors{AllowOrigins: []string{"*"}, MaxAge: aws.Int32(10)}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(aws.ToString(out.FunctionUrl), "http://") || !strings.Contains(aws.ToString(out.FunctionUrl), ".lambda-url.us-east-1.") ||
		aws.ToString(out.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:web" || out.AuthType != types.FunctionUrlAuthTypeAwsIam ||
		out.InvokeMode != types.InvokeModeResponseStream || aws.ToString(out.CreationTime) != "2026-03-04T05:06:07.890000Z" ||
		out.Cors == nil || aws.ToInt32(out.Cors.MaxAge) != 10 {
		t.Errorf("create: %+v", out)
	}
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone}); apiCode(err) != "ResourceConflictException" {
		t.Errorf("second create: %v", err)
	}
	bad := []*lambda.CreateFunctionUrlConfigInput{
		{FunctionName: aws.String("web"), AuthType: "SOMETIMES", Qualifier: aws.String("x")},
		{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone, Qualifier: aws.String("1")},
		{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: "FAST", Qualifier: aws.String("x")},
		{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone, Qualifier: aws.String("x"), Cors: &types.Cors{MaxAge: aws.Int32(86401)}},
		{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone, Qualifier: aws.String("x"), Cors: &types.Cors{AllowMethods: []string{"LONGMETHOD"}}},
	}
	for i, in := range bad {
		if _, err := c.CreateFunctionUrlConfig(ctx, in); apiCode(err) != "ValidationException" {
			t.Errorf("bad input %d: %v, want ValidationException", i, err)
		}
	}
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone,
		Qualifier: aws.String("nosuchalias")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("url on a missing alias: %v", err)
	}
	if _, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone,
		Qualifier: aws.String("$LATEST")}); err != nil {
		t.Errorf("url on $LATEST: %v", err)
	}
	up, err := c.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("web"), AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil || up.AuthType != types.FunctionUrlAuthTypeNone || up.InvokeMode != types.InvokeModeResponseStream || aws.ToString(up.FunctionUrl) != aws.ToString(out.FunctionUrl) ||
		up.Cors == nil || aws.ToString(up.LastModifiedTime) == "" {
		t.Errorf("update: %+v %v", up, err)
	}
	list, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("web"), MaxItems: aws.Int32(1)})
	if err != nil || len(list.FunctionUrlConfigs) != 1 || list.NextMarker == nil {
		t.Fatalf("list page 1: %+v %v", list, err)
	}
	list2, err := c.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("web"), Marker: list.NextMarker})
	if err != nil || len(list2.FunctionUrlConfigs) != 1 || list2.NextMarker != nil ||
		aws.ToString(list2.FunctionUrlConfigs[0].FunctionUrl) == aws.ToString(list.FunctionUrlConfigs[0].FunctionUrl) {
		t.Errorf("list page 2: %+v %v", list2, err)
	}
	if _, err := c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("get after delete: %v", err)
	}
	if _, err := c.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("second delete: %v", err)
	}
}

// TestSDKInvokeWithResponseStreamBuffered: an Invoker that cannot stream
// answers InvokeWithResponseStream in one PayloadChunk; function errors
// arrive in InvokeComplete, throttles as errors before any event.
func TestSDKInvokeWithResponseStreamBuffered(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	if _, err := c.CreateFunction(ctx, createInput("s", zipOf(t, map[string]string{"bootstrap": "v1"}))); err != nil {
		t.Fatal(err)
	}
	read := func(payload string) (string, *types.InvokeWithResponseStreamCompleteEvent, error) {
		out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("s"), Payload: []byte(payload), LogType: types.LogTypeTail})
		if err != nil {
			return "", nil, err
		}
		st := out.GetStream()
		defer st.Close()
		var body strings.Builder
		var done *types.InvokeWithResponseStreamCompleteEvent
		for ev := range st.Events() {
			switch v := ev.(type) {
			case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
				body.Write(v.Value.Payload)
			case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
				done = &v.Value
			}
		}
		if aws.ToString(out.ExecutedVersion) != "$LATEST" {
			t.Errorf("ExecutedVersion %q", aws.ToString(out.ExecutedVersion))
		}
		return body.String(), done, st.Err()
	}
	body, done, err := read(`{"hello":"stream"}`)
	if err != nil || body != `{"hello":"stream"}` || done == nil || done.ErrorCode != nil || done.LogResult == nil {
		t.Errorf("ok: %q %+v %v", body, done, err)
	}
	body, done, err = read(`{"fail":true}`)
	if err != nil || body != "" || done == nil || aws.ToString(done.ErrorCode) != "Runtime.ExitError" || !strings.Contains(aws.ToString(done.ErrorDetails), "boom") {
		t.Errorf("function error: %q %+v %v", body, done, err)
	}
	if _, _, err := read(`{"throttle":true}`); apiCode(err) != "TooManyRequestsException" {
		t.Errorf("throttle: %v", err)
	}
	if _, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("missing")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("missing function: %v", err)
	}
}
