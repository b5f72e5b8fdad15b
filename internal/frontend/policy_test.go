package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/flintdev/flint/internal/auth"
)

const accountB = "222222222222"

// withCallers puts a caller into each request's context the way the sigv4
// middleware does (its verification has its own tests): requests signed
// with access key "AKIDB" act for accountB, others for the default
// account.
func withCallers(e *testEnv) {
	inner := e.srv.Config.Handler
	e.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := auth.Caller{Account: "000000000000", AccessKeyID: "AKIDEXAMPLE"}
		if strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDB/") {
			c = auth.Caller{Account: accountB, AccessKeyID: "AKIDB"}
		}
		inner.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), c)))
	})
}

func wantAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("err = %v, want %s (%d)", err, code, status)
	}
}

func TestPolicyAndTenancy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	withCallers(e)
	a := e.client
	b := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDB", "secret", ""), HTTPClient: e.srv.Client(), RetryMaxAttempts: 1})
	zip := zipOf(t, map[string]string{"bootstrap": "#!/bin/sh\n"})
	if _, err := a.CreateFunction(ctx, createInput("shared", zip)); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:lambda:us-east-1:000000000000:function:shared"

	// B sees nothing of A's by name, and is denied by ARN.
	if out, err := b.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil || len(out.Functions) != 0 {
		t.Fatalf("B lists %v, %v", out, err)
	}
	_, err := b.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("shared")})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
	_, err = b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn)})
	wantAPIError(t, err, "AccessDeniedException", 403)
	_, err = b.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String(arn), StatementId: aws.String("s"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(accountB)})
	wantAPIError(t, err, "AccessDeniedException", 403)

	// No policy yet.
	_, err = a.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("shared")})
	wantAPIError(t, err, "ResourceNotFoundException", 404)

	add, err := a.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("let-b-invoke"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(accountB)})
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(add.Statement)), &st); err != nil || st["Sid"] != "let-b-invoke" || st["Resource"] != arn ||
		st["Principal"].(map[string]any)["AWS"] != "arn:aws:iam::"+accountB+":root" || st["Effect"] != "Allow" {
		t.Fatalf("statement %s (%v)", aws.ToString(add.Statement), err)
	}
	_, err = a.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("let-b-invoke"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String(accountB)})
	wantAPIError(t, err, "ResourceConflictException", 409)
	pol, err := a.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("shared")})
	if err != nil || !strings.Contains(aws.ToString(pol.Policy), `"Sid":"let-b-invoke"`) || aws.ToString(pol.RevisionId) == "" {
		t.Fatalf("GetPolicy %v %v", pol, err)
	}
	_, err = a.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("stale"),
		Action: aws.String("lambda:GetFunction"), Principal: aws.String(accountB), RevisionId: aws.String("not-the-revision")})
	wantAPIError(t, err, "PreconditionFailedException", 412)

	// B may now invoke by ARN, and still do nothing else.
	out, err := b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn), Payload: []byte(`{"x":1}`)})
	if err != nil || out.StatusCode != 200 {
		t.Fatalf("B invoke after AddPermission: %v %v", out, err)
	}
	_, err = b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("shared")})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
	_, err = b.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(arn)})
	wantAPIError(t, err, "AccessDeniedException", 403)
	_, err = b.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(arn), Description: aws.String("x")})
	wantAPIError(t, err, "AccessDeniedException", 403)
	_, err = b.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(arn)})
	wantAPIError(t, err, "AccessDeniedException", 403)
	// The grant is of the unqualified function, not of a version.
	_, err = b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn), Qualifier: aws.String("1")})
	wantAPIError(t, err, "AccessDeniedException", 403)

	// Removing the statement (guarded by the revision) takes the grant away.
	_, err = a.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("let-b-invoke"), RevisionId: aws.String("old")})
	wantAPIError(t, err, "PreconditionFailedException", 412)
	if _, err := a.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("let-b-invoke"), RevisionId: pol.RevisionId}); err != nil {
		t.Fatal(err)
	}
	_, err = a.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("shared"), StatementId: aws.String("let-b-invoke")})
	wantAPIError(t, err, "ResourceNotFoundException", 404)
	_, err = b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn)})
	wantAPIError(t, err, "AccessDeniedException", 403)

	// B's own function of the same name is B's alone.
	if _, err := b.CreateFunction(ctx, createInput("shared", zip)); err != nil {
		t.Fatal(err)
	}
	fb, err := b.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("shared")})
	if err != nil || aws.ToString(fb.Configuration.FunctionArn) != "arn:aws:lambda:us-east-1:"+accountB+":function:shared" {
		t.Fatalf("B's function: %v %v", fb, err)
	}
	if _, err := b.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("shared")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("shared")}); err != nil {
		t.Fatalf("A's function went with B's: %v", err)
	}
	var bad *types.ResourceNotFoundException
	_, err = b.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("shared")})
	if !errors.As(err, &bad) {
		t.Fatalf("B's deleted function: %v", err)
	}
}
