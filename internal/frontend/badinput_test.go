package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// typedAs reports whether err is the SDK's typed error for code (for the
// codes Lambda's model declares).
func typedAs(err error, code string) bool {
	switch code {
	case "ResourceNotFoundException":
		var e *types.ResourceNotFoundException
		return errors.As(err, &e)
	case "InvalidParameterValueException":
		var e *types.InvalidParameterValueException
		return errors.As(err, &e) && aws.ToString(e.Message) != ""
	case "InvalidRequestContentException":
		var e *types.InvalidRequestContentException
		return errors.As(err, &e) && aws.ToString(e.Message) != ""
	case "RequestEntityTooLargeException", "ValidationException", "AccessDeniedException":
		// Not in Lambda's model (its RequestTooLargeException is not what
		// the service answers for a payload): a generic API error.
		var e *smithy.GenericAPIError
		return errors.As(err, &e)
	}
	return false
}

func TestBadInputSDK(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.client
	zip := zipOf(t, map[string]string{"bootstrap": "x"})
	if _, err := c.CreateFunction(ctx, createInput("target", zip)); err != nil {
		t.Fatal(err)
	}
	withCreate := func(mod func(*lambda.CreateFunctionInput)) func() error {
		return func() error {
			in := createInput("newfn", zip)
			mod(in)
			_, err := c.CreateFunction(ctx, in)
			return err
		}
	}
	bigEnv := map[string]string{}
	for i := range 50 {
		bigEnv["KEY_"+strings.Repeat("K", 10)+string(rune('A'+i%26))+string(rune('A'+i/26))] = strings.Repeat("v", 80)
	}
	cases := []struct {
		name   string
		call   func() error
		code   string
		status int
		msg    string // substring of the message, when it matters
	}{
		{"create empty name", withCreate(func(in *lambda.CreateFunctionInput) { in.FunctionName = aws.String("") }), "ValidationException", 400, "'functionName'"},
		{"create 65-char name", withCreate(func(in *lambda.CreateFunctionInput) { in.FunctionName = aws.String(strings.Repeat("a", 65)) }), "ValidationException", 400, "less than or equal to 64"},
		{"create ../x", withCreate(func(in *lambda.CreateFunctionInput) { in.FunctionName = aws.String("../x") }), "ValidationException", 400, "regular expression pattern"},
		{"create other account ARN", withCreate(func(in *lambda.CreateFunctionInput) {
			in.FunctionName = aws.String("arn:aws:lambda:us-east-1:123456789012:function:x")
		}), "AccessDeniedException", 403, "User: arn:aws:iam::000000000000:root is not authorized to perform: lambda:CreateFunction"},
		{"create other region ARN", withCreate(func(in *lambda.CreateFunctionInput) {
			in.FunctionName = aws.String("arn:aws:lambda:eu-west-1:000000000000:function:x")
		}), "InvalidParameterValueException", 400, "region us-east-1"},
		{"memory 64", withCreate(func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(64) }), "ValidationException", 400, "'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128"},
		{"memory 20000", withCreate(func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(20000) }), "ValidationException", 400, "less than or equal to 10240"},
		{"timeout 0", withCreate(func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(0) }), "ValidationException", 400, "'timeout'"},
		{"timeout 901", withCreate(func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(901) }), "ValidationException", 400, "less than or equal to 900"},
		{"ephemeral 100", withCreate(func(in *lambda.CreateFunctionInput) {
			in.EphemeralStorage = &types.EphemeralStorage{Size: aws.Int32(100)}
		}), "ValidationException", 400, "'ephemeralStorage.size'"},
		{"env over 4KB", withCreate(func(in *lambda.CreateFunctionInput) { in.Environment = &types.Environment{Variables: bigEnv} }), "InvalidParameterValueException", 400, "exceeded the 4KB limit"},
		{"env reserved key", withCreate(func(in *lambda.CreateFunctionInput) {
			in.Environment = &types.Environment{Variables: map[string]string{"AWS_REGION": "x"}}
		}), "InvalidParameterValueException", 400, "Reserved keys used in this request: AWS_REGION"},
		{"env bad key", withCreate(func(in *lambda.CreateFunctionInput) {
			in.Environment = &types.Environment{Variables: map[string]string{"1BAD": "x"}}
		}), "ValidationException", 400, "environment.variables"},
		{"bad zip", withCreate(func(in *lambda.CreateFunctionInput) { in.Code.ZipFile = []byte("not a zip") }), "InvalidParameterValueException", 400, "Could not unzip"},
		{"unknown runtime", withCreate(func(in *lambda.CreateFunctionInput) { in.Runtime = "java21" }), "InvalidParameterValueException", 400, "nodejs20.x, provided.al2, provided.al2023, python3.11"},
		{"missing runtime", withCreate(func(in *lambda.CreateFunctionInput) { in.Runtime = "" }), "InvalidParameterValueException", 400, "Runtime and Handler"},
		{"bad role", withCreate(func(in *lambda.CreateFunctionInput) { in.Role = aws.String("admin") }), "ValidationException", 400, "'role'"},
		{"s3 code", withCreate(func(in *lambda.CreateFunctionInput) {
			in.Code = &types.FunctionCode{S3Bucket: aws.String("b"), S3Key: aws.String("k")}
		}), "InvalidParameterValueException", 400, "S3"},
		{"image package", withCreate(func(in *lambda.CreateFunctionInput) { in.PackageType = types.PackageTypeImage }), "InvalidParameterValueException", 400, "PackageType Image"},
		{"arm64", withCreate(func(in *lambda.CreateFunctionInput) { in.Architectures = []types.Architecture{types.ArchitectureArm64} }), "InvalidParameterValueException", 400, "arm64"},
		{"sns dead-letter target", withCreate(func(in *lambda.CreateFunctionInput) {
			in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sns:us-east-1:000000000000:topic")}
		}), "InvalidParameterValueException", 400, "DeadLetterConfig"},
		{"layers", withCreate(func(in *lambda.CreateFunctionInput) {
			in.Layers = []string{"arn:aws:lambda:us-east-1:000000000000:layer:l:1"}
		}), "InvalidParameterValueException", 400, "Layer version arn:aws:lambda:us-east-1:000000000000:layer:l:1 does not exist."},
		{"get ../x", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("../x")})
			return err
		}, "ValidationException", 400, "regular expression pattern"},
		{"get 65-char name", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(strings.Repeat("b", 65))})
			return err
		}, "ValidationException", 400, "64"},
		{"get other account ARN", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:target")})
			return err
		}, "AccessDeniedException", 403, "is not authorized to perform: lambda:GetFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:target"},
		{"get partial ARN other account", func() error {
			_, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("123456789012:function:target")})
			return err
		}, "AccessDeniedException", 403, "lambda:GetFunctionConfiguration"},
		{"get qualifier 1", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("target"), Qualifier: aws.String("1")})
			return err
		}, "ResourceNotFoundException", 404, "function:target:1"},
		{"get missing", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("missing")})
			return err
		}, "ResourceNotFoundException", 404, "Function not found: arn:aws:lambda:us-east-1:000000000000:function:missing"},
		{"list MaxItems 0", func() error {
			_, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(0)})
			return err
		}, "ValidationException", 400, "maxItems"},
		{"update config memory", func() error {
			_, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("target"), MemorySize: aws.Int32(1)})
			return err
		}, "ValidationException", 400, "memorySize"},
		{"update code bad zip", func() error {
			_, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("target"), ZipFile: []byte("PK garbage")})
			return err
		}, "InvalidParameterValueException", 400, "unzip"},
		{"invoke payload over 6MB", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("target"), Payload: bytes.Repeat([]byte(" "), maxSyncPayload+1)})
			return err
		}, "RequestEntityTooLargeException", 413, "Request must be smaller than 6291456 bytes for the InvokeFunction operation"},
		{"invoke event over 1MB", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("target"), InvocationType: types.InvocationTypeEvent,
				Payload: bytes.Repeat([]byte(" "), maxAsyncPayload+1)})
			return err
		}, "RequestEntityTooLargeException", 413, "1048576"},
		{"invoke malformed JSON", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("target"), Payload: []byte(`{"a":`)})
			return err
		}, "InvalidRequestContentException", 400, "Could not parse request body into json"},
		{"invoke bad client context", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("target"), ClientContext: aws.String("%%%")})
			return err
		}, "InvalidRequestContentException", 400, "Client context"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae smithy.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want API error %s", err, tc.code)
			}
			if ae.ErrorCode() != tc.code || !strings.Contains(ae.ErrorMessage(), tc.msg) {
				t.Fatalf("got %s %q, want %s containing %q", ae.ErrorCode(), ae.ErrorMessage(), tc.code, tc.msg)
			}
			if !typedAs(err, tc.code) {
				t.Fatalf("err %T is not the SDK's typed %s", err, tc.code)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != tc.status {
				t.Fatalf("status = %v, want %d", err, tc.status)
			}
		})
	}
	// The server is still serving, and nothing was created by the
	// rejected requests.
	out, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(out.Functions) != 1 || aws.ToString(out.Functions[0].FunctionName) != "target" {
		t.Fatalf("after bad input: ListFunctions = %v, %v", out, err)
	}
}

func TestBadInputHTTP(t *testing.T) {
	e := newEnv(t)
	zip := zipOf(t, map[string]string{"bootstrap": "x"})
	if _, err := e.client.CreateFunction(context.Background(), createInput("target", zip)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name         string
		method, path string
		body         io.Reader
		length       int64 // Content-Length when body is a stream
		header       map[string]string
		status       int
		errType      string // "" for success
		msg          string
	}{
		{"malformed create", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":`), 0, nil, 400, "InvalidRequestContentException", "Could not parse request body into json"},
		{"wrong type", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":"x","MemorySize":"big"}`), 0, nil, 400, "InvalidRequestContentException", "MemorySize"},
		{"bad base64 zip", "POST", "/2015-03-31/functions", strings.NewReader(`{"FunctionName":"x","Code":{"ZipFile":"!!!"}}`), 0, nil, 400, "InvalidRequestContentException", ""},
		{"trailing garbage", "PUT", "/2015-03-31/functions/target/configuration", strings.NewReader(`{} {}`), 0, nil, 400, "InvalidRequestContentException", ""},
		{"create body over limit", "POST", "/2015-03-31/functions", io.LimitReader(zeroReader{}, maxCodeRequest+1), maxCodeRequest + 1, nil, 413, "RequestEntityTooLargeException", "69905067 bytes for the CreateFunction operation"},
		{"unknown route", "GET", "/2015-03-31/layers", nil, 0, nil, 404, "UnknownOperationException", "/2015-03-31/layers"},
		{"too deep", "GET", "/2015-03-31/functions/a/b/c", nil, 0, nil, 404, "UnknownOperationException", ""},
		{"unknown sub", "GET", "/2015-03-31/functions/target/bogus", nil, 0, nil, 404, "UnknownOperationException", ""},
		{"escaped slash", "GET", "/2015-03-31/functions/a%2Fb", nil, 0, nil, 400, "ValidationException", "'a/b'"},
		{"method", "PATCH", "/2015-03-31/functions/target", nil, 0, nil, 405, "MethodNotAllowedException", "GET, DELETE"},
		{"method on collection", "DELETE", "/2015-03-31/functions", nil, 0, nil, 405, "MethodNotAllowedException", ""},
		{"bad invocation type", "POST", "/2015-03-31/functions/target/invocations", strings.NewReader(`{}`), 0, map[string]string{"X-Amz-Invocation-Type": "Later"}, 400, "ValidationException", "invocationType"},
		{"delete $LATEST", "DELETE", "/2015-03-31/functions/target?Qualifier=$LATEST", nil, 0, nil, 400, "InvalidParameterValueException", "$LATEST"},
		{"mismatched qualifiers", "GET", "/2015-03-31/functions/target:$LATEST?Qualifier=7", nil, 0, nil, 400, "InvalidParameterValueException", "does not match"},
		// Lambda takes any content type; the payload is what counts.
		{"text/plain invoke", "POST", "/2015-03-31/functions/target/invocations", strings.NewReader(`"hi"`), 0, map[string]string{"Content-Type": "text/plain"}, 200, "", ""},
		{"empty invoke", "POST", "/2015-03-31/functions/target/invocations", nil, 0, nil, 200, "", ""},
		{"partial ARN escaped", "GET", "/2015-03-31/functions/000000000000%3Afunction%3Atarget/configuration", nil, 0, nil, 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.srv.URL+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.length > 0 {
				req.ContentLength = tc.length
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if resp.Header.Get("X-Amzn-RequestId") == "" {
				t.Error("no X-Amzn-RequestId")
			}
			if tc.errType == "" {
				return
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tc.errType {
				t.Fatalf("X-Amzn-ErrorType %q, want %q", got, tc.errType)
			}
			var doc map[string]string
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("error body %q is not a JSON object of strings: %v", body, err)
			}
			msg := doc["message"] + doc["Message"]
			if doc["Type"] != "User" || msg == "" || !strings.Contains(msg, tc.msg) {
				t.Fatalf("error body %s, want Type User and a message containing %q", body, tc.msg)
			}
		})
	}
	resp, err := e.srv.Client().Get(e.srv.URL + "/2015-03-31/functions/target")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server stopped serving: %v %v", resp, err)
	}
	resp.Body.Close()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
