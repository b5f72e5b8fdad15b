package frontend

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// otherAccount serves the same stores as e for another account, with its
// own SDK client.
func otherAccount(t *testing.T, e *testEnv, account string) *lambda.Client {
	t.Helper()
	h, err := New(Config{
		Account: account, Functions: e.store, Code: e.code, Invoker: e.invoker, Layers: e.layers,
		Runtimes: staticRuntimes{"provided.al2023", "python3.11"},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Clock:    func() time.Time { return testTime },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, p := range Prefixes {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""), RetryMaxAttempts: 1})
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestLayerAcrossAccounts: a layer of another account can be read and
// used only once its version's policy grants the account, and never
// changed by it.
func TestLayerAcrossAccounts(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	pub, err := e.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("shared"),
		Content: &types.LayerVersionContentInput{ZipFile: zipOf(t, map[string]string{"python/m.py": "X = 1\n"})}})
	if err != nil {
		t.Fatal(err)
	}
	arn := pub.LayerVersionArn
	b := otherAccount(t, e, "111111111111")
	create := func() error {
		_, err := b.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("uses-shared"), Runtime: "python3.11",
			Handler: aws.String("app.handler"), Role: aws.String(testRole), Layers: []string{*arn},
			Code: &types.FunctionCode{ZipFile: zipOf(t, map[string]string{"app.py": "def handler(e, c): return 1\n"})}})
		return err
	}
	if _, err := b.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: arn}); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("read without grant: %v", err)
	}
	if err := create(); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("use without grant: %v", err)
	}
	if _, err := e.client.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{LayerName: aws.String("shared"),
		VersionNumber: aws.Int64(1), StatementId: aws.String("b"), Action: aws.String("lambda:GetLayerVersion"),
		Principal: aws.String("arn:aws:iam::111111111111:root")}); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("arn:aws:lambda:us-east-1:000000000000:layer:shared"), VersionNumber: aws.Int64(1)})
	if err != nil || aws.ToString(got.LayerVersionArn) != *arn {
		t.Fatalf("read with grant: %+v, %v", got, err)
	}
	if err := create(); err != nil {
		t.Fatalf("use with grant: %v", err)
	}
	if _, err := b.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("arn:aws:lambda:us-east-1:000000000000:layer:shared"),
		VersionNumber: aws.Int64(1)}); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("delete another account's layer: %v", err)
	}
	if ls, err := b.ListLayers(ctx, &lambda.ListLayersInput{}); err != nil || len(ls.Layers) != 0 {
		t.Fatalf("ListLayers of the other account: %+v, %v", ls, err)
	}
}

func TestLayerRoutesAnswerLambdaErrors(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path, typ string }{
		{"GET", "/2018-10-31/layers/x/nope", "UnknownOperationException"},
		{"PUT", "/2018-10-31/layers/x/versions", "MethodNotAllowedException"},
		{"GET", "/2018-10-31/layers/x/versions/abc", "InvalidParameterValueException"},
		{"GET", "/2018-10-31/layers/a.b/versions", "ValidationException"},
		{"GET", "/2018-10-31/layers?find=LayerVersion&Arn=arn:aws:lambda:us-east-1:000000000000:layer:x", "ValidationException"},
		{"GET", "/2018-10-31/layers?MaxItems=51", "ValidationException"},
		{"GET", "/2018-10-31/layers/x/versions/1", "ResourceNotFoundException"},
		{"GET", "/2018-10-31/layers/x/versions/1/policy", "ResourceNotFoundException"},
	} {
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Amzn-ErrorType") != c.typ || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s %s", c.method, c.path, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body)
		}
	}
}
