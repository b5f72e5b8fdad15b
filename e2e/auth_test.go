package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/flintdev/flint/internal/auth/keystore"
	"github.com/flintdev/flint/internal/auth/sigv4"
	"github.com/flintdev/flint/internal/polltest"
)

// creds is an access key as `flint keys create` prints it.
type creds struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Account         string `json:"Account"`
}

func (c creds) env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey}
}

// rootCreds reads the root key the server wrote to DATA/credentials.
func (s *flintServer) rootCreds(t *testing.T) creds {
	t.Helper()
	path := filepath.Join(s.data, "credentials")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root credentials %s: %v %v (want mode 0600)", path, fi, err)
	}
	id, secret, err := keystore.ReadCredentials(path, "flint")
	if err != nil {
		t.Fatal(err)
	}
	return creds{AccessKeyID: id, SecretAccessKey: secret, Account: "000000000000"}
}

func (s *flintServer) lambdaAs(c creds) *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(s.url()),
		Credentials:      credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
	})
}

// flintAs runs the flint CLI with env (and no other AWS settings).
func (s *flintServer) flintAs(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, flintBin, append([]string{"--endpoint", s.url()}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "FLINT_DATA=" + t.TempDir()}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// awsAs runs Debian's AWS CLI with env's credentials.
func (s *flintServer) awsAs(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	bin := "/usr/bin/aws"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Debian's awscli is not installed (apt-get install -y awscli; .ci/run does it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--endpoint-url", s.url(), "--region", "us-east-1", "--no-cli-pager", "--output", "json"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_MAX_ATTEMPTS=1"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// signedDo sends a request to s signed with c at time at (nil c: unsigned).
func (s *flintServer) signedDo(t *testing.T, c *creds, method, path string, body []byte, at time.Time) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		if err := sigv4.Sign(context.Background(), req, aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey}, "us-east-1", at); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), string(b)
}

func wantCode(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Fatalf("%s: err = %v, want %s (%d)", what, err, code, status)
	}
}

// TestAuthRefusals: with --auth required, each kind of bad request gets
// AWS's own 403 type, from the Go SDK, the AWS CLI and plain HTTP; the
// root key the server wrote works.
func TestAuthRefusals(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth", "required")
	root := s.rootCreds(t)
	if !strings.Contains(s.log(), "credentials="+filepath.Join(s.data, "credentials")) {
		t.Fatalf("the server did not say where the root key is:\n%s", s.log())
	}
	if strings.Contains(s.log(), root.SecretAccessKey) {
		t.Fatal("the server logged the root key's secret")
	}
	ctx := ctxT(t, 2*time.Minute)
	createGoFn(t, s.lambdaAs(root), "root-fn", nil)

	// aws-sdk-go-v2.
	_, err := s.lambdaAs(creds{AccessKeyID: "AKFLNOSUCHKEY0000000", SecretAccessKey: "x"}).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	wantCode(t, "unknown key", err, "UnrecognizedClientException", 403)
	_, err = s.lambdaAs(creds{AccessKeyID: root.AccessKeyID, SecretAccessKey: "wrong"}).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	wantCode(t, "wrong secret", err, "InvalidSignatureException", 403)
	out, err := s.lambdaAs(root).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(out.Functions) != 1 {
		t.Fatalf("root key: %v %v", out, err)
	}

	// Plain HTTP: unsigned, tampered body, stale and future dates.
	if st, typ, body := s.signedDo(t, nil, "GET", "/2015-03-31/functions", nil, time.Now()); st != 403 || typ != "MissingAuthenticationTokenException" || !strings.Contains(body, "Missing Authentication Token") {
		t.Fatalf("unsigned: %d %s %s", st, typ, body)
	}
	req, _ := http.NewRequest("POST", s.url()+"/2015-03-31/functions/root-fn/invocations", strings.NewReader(`{"name":"a"}`))
	sigv4.Sign(ctx, req, aws.Credentials{AccessKeyID: root.AccessKeyID, SecretAccessKey: root.SecretAccessKey}, "us-east-1", time.Now())
	req.Body = io.NopCloser(strings.NewReader(`{"name":"b"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != "InvalidSignatureException" {
		t.Fatalf("tampered body: %s %s", resp.Status, resp.Header.Get("X-Amzn-ErrorType"))
	}
	for _, d := range []time.Duration{-6 * time.Minute, 6 * time.Minute} {
		st, typ, body := s.signedDo(t, &root, "GET", "/2015-03-31/functions", nil, time.Now().Add(d))
		if st != 403 || typ != "InvalidSignatureException" || !strings.Contains(body, "Signature") {
			t.Fatalf("signature %v old: %d %s %s", -d, st, typ, body)
		}
	}
	// Malformed headers are 403s, never 5xx.
	for _, h := range []string{"AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=/////", "Bearer x", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=zz"} {
		req, _ := http.NewRequest("GET", s.url()+"/2015-03-31/functions", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("Authorization %q: %s", h, resp.Status)
		}
	}
	// Every endpoint, Lambda's and Flint's own, known or not, is behind it.
	for _, path := range []string{"/2016-08-19/account-settings", "/2019-09-25/functions/root-fn/event-invoke-config",
		"/2017-10-31/functions/root-fn/concurrency", "/flint/v1/invocations/00000000-0000-4000-8000-000000000000",
		"/flint/v1/queues/q/messages", "/flint/v1/functions/root-fn/logs", "/flint/v1/stats", "/flint/v1/keys", "/flint/v1/cluster", "/nowhere"} {
		if st, typ, _ := s.signedDo(t, nil, "GET", path, nil, time.Now()); st != 403 || typ != "MissingAuthenticationTokenException" {
			t.Fatalf("unsigned GET %s: %d %s", path, st, typ)
		}
	}
	if st, _, body := s.signedDo(t, &root, "GET", "/flint/v1/stats", nil, time.Now()); st != 200 {
		t.Fatalf("stats with the root key: %d %s", st, body)
	}
	// Health stays open.
	if st, _, _ := s.signedDo(t, nil, "GET", "/healthz", nil, time.Now()); st != 200 {
		t.Fatalf("/healthz unsigned: %d", st)
	}

	// Debian's AWS CLI.
	cli := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unsigned", nil, []string{"--no-sign-request", "lambda", "list-functions"}, "(MissingAuthenticationTokenException)"},
		{"unknown key", creds{AccessKeyID: "AKFLNOSUCHKEY0000000", SecretAccessKey: "x"}.env(), []string{"lambda", "list-functions"}, "(UnrecognizedClientException)"},
		{"wrong secret", creds{AccessKeyID: root.AccessKeyID, SecretAccessKey: "wrong"}.env(), []string{"lambda", "list-functions"}, "(InvalidSignatureException)"},
	}
	for _, c := range cli {
		_, stderr, err := s.awsAs(t, c.env, c.args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Fatalf("aws %s: %v, stderr %s (want %s)", c.name, err, stderr, c.want)
		}
	}
	stdout, stderr, err := s.awsAs(t, []string{"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.data, "credentials"), "AWS_PROFILE=flint"},
		"lambda", "invoke", "--function-name", "root-fn", "--cli-binary-format", "raw-in-base64-out", "--payload", `{"name":"cli"}`, "/dev/stdout")
	if err != nil || !strings.Contains(stdout, `"hello":"cli"`) {
		t.Fatalf("aws with the root key's profile: %v\n%s\n%s", err, stdout, stderr)
	}
}

// TestAuthTenants: two accounts with their own keys see and touch only
// their own functions; a resource policy lets B invoke A's function by
// ARN and nothing else.
func TestAuthTenants(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth", "required")
	root := s.rootCreds(t)
	ctx := ctxT(t, 3*time.Minute)

	// Keys, through the flint CLI with the root key.
	mkKey := func(account string) creds {
		out, err := s.flintAs(t, root.env(), "keys", "create", "--account", account)
		var k creds
		if err != nil || json.Unmarshal([]byte(out), &k) != nil || k.Account != account || k.SecretAccessKey == "" {
			t.Fatalf("flint keys create: %v\n%s", err, out)
		}
		return k
	}
	a, b := mkKey("111111111111"), mkKey("222222222222")
	out, err := s.flintAs(t, root.env(), "keys", "list")
	if err != nil || !strings.Contains(out, a.AccessKeyID) || !strings.Contains(out, b.AccessKeyID) || strings.Contains(out, a.SecretAccessKey) {
		t.Fatalf("flint keys list: %v\n%s", err, out)
	}
	if out, err := s.flintAs(t, a.env(), "keys", "list"); err == nil || !strings.Contains(out, "AccessDeniedException") {
		t.Fatalf("keys list with a non-root key: %v\n%s", err, out)
	}
	if st, typ, _ := s.signedDo(t, &a, "GET", "/flint/v1/stats", nil, time.Now()); st != 403 || typ != "AccessDeniedException" {
		t.Fatalf("stats with a non-root key: %d %s", st, typ)
	}
	ca, cb := s.lambdaAs(a), s.lambdaAs(b)
	createGoFn(t, ca, "a-fn", nil)
	arn := "arn:aws:lambda:us-east-1:111111111111:function:a-fn"
	res := invoke(t, ca, "a-fn", map[string]any{"name": "secret-of-a"}, false)
	if !strings.Contains(string(res.Payload), "secret-of-a") {
		t.Fatalf("A invoking its function: %s", res.Payload)
	}
	if _, err := ca.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("a-fn"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sqs:us-east-1:111111111111:a-ok")}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := ca.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("a-fn"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"name":"async-of-a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	reqID, _ := awsmiddleware.GetRequestIDMetadata(ev.ResultMetadata)
	if reqID == "" {
		t.Fatal("no request id for the Event invocation")
	}
	polltest.Check(t, 60*time.Second, "A's logs to show its async invocation", func() error {
		if st, _, body := s.signedDo(t, &a, "GET", "/flint/v1/functions/a-fn/logs", nil, time.Now()); st != 200 || !strings.Contains(body, "async-of-a") {
			return errors.New("A's logs do not show its async invocation yet")
		}
		return nil
	})

	polltest.Check(t, 60*time.Second, "A's success destination to hold the record", func() error {
		if st, _, body := s.signedDo(t, &a, "GET", "/flint/v1/queues/a-ok/messages", nil, time.Now()); st != 200 || !strings.Contains(body, "async-of-a") {
			return fmt.Errorf("A's queue: %d %s", st, body)
		}
		return nil
	})
	_, err = cb.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("a-fn")})
	wantCode(t, "B GetFunctionEventInvokeConfig by name", err, "ResourceNotFoundException", 404)

	// B: list, get, invoke, logs, async status, queues, change — none of A's.
	if l, err := cb.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil || len(l.Functions) != 0 {
		t.Fatalf("B lists %v, %v", l, err)
	}
	denied := func(when string) {
		t.Helper()
		_, err := cb.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("a-fn")})
		wantCode(t, when+": B GetFunction by name", err, "ResourceNotFoundException", 404)
		_, err = cb.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(arn)})
		wantCode(t, when+": B GetFunctionConfiguration by ARN", err, "AccessDeniedException", 403)
		_, err = cb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("a-fn")})
		wantCode(t, when+": B Invoke by name", err, "ResourceNotFoundException", 404)
		_, err = cb.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(arn), Description: aws.String("pwned")})
		wantCode(t, when+": B UpdateFunctionConfiguration by ARN", err, "AccessDeniedException", 403)
		_, err = cb.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("a-fn")})
		wantCode(t, when+": B DeleteFunction by name", err, "ResourceNotFoundException", 404)
		_, err = cb.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String(arn), StatementId: aws.String("b-self"),
			Action: aws.String("lambda:*"), Principal: aws.String("222222222222")})
		wantCode(t, when+": B AddPermission by ARN", err, "AccessDeniedException", 403)
		if st, _, body := s.signedDo(t, &b, "GET", "/flint/v1/functions/a-fn/logs", nil, time.Now()); strings.Contains(body, "of-a") {
			t.Fatalf("%s: B reads A's logs: %d %s", when, st, body)
		}
		if st, typ, _ := s.signedDo(t, &b, "GET", "/flint/v1/invocations/"+reqID, nil, time.Now()); st != 404 || typ != "ResourceNotFoundException" {
			t.Fatalf("%s: B reads A's async status: %d %s", when, st, typ)
		}
		if st, _, body := s.signedDo(t, &b, "POST", "/flint/v1/queues/a-ok/receive", nil, time.Now()); strings.Contains(body, "of-a") {
			t.Fatalf("%s: B takes from A's queue: %d %s", when, st, body)
		}
	}
	denied("before AddPermission")
	if st, _, body := s.signedDo(t, &a, "GET", "/flint/v1/invocations/"+reqID, nil, time.Now()); st != 200 || !strings.Contains(body, "a-fn") {
		t.Fatalf("A reads its async status: %d %s", st, body)
	}
	_, err = cb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn)})
	wantCode(t, "B Invoke by ARN before AddPermission", err, "AccessDeniedException", 403)
	// B's function of the same name is its own.
	createGoFn(t, cb, "a-fn", nil)
	if _, err := cb.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("a-fn")}); err != nil {
		t.Fatal(err)
	}
	if fa, err := ca.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("a-fn")}); err != nil || aws.ToString(fa.Configuration.Description) == "pwned" {
		t.Fatalf("A's function after B's attempts: %v %v", fa, err)
	}

	// A grants B lambda:InvokeFunction, with the AWS CLI.
	stdout, stderr, err := s.awsAs(t, a.env(), "lambda", "add-permission", "--function-name", "a-fn", "--statement-id", "let-b",
		"--action", "lambda:InvokeFunction", "--principal", "222222222222")
	if err != nil || !strings.Contains(stdout, "let-b") {
		t.Fatalf("aws lambda add-permission: %v\n%s\n%s", err, stdout, stderr)
	}
	if stdout, stderr, err := s.awsAs(t, a.env(), "lambda", "get-policy", "--function-name", "a-fn"); err != nil || !strings.Contains(stdout, "arn:aws:iam::222222222222:root") {
		t.Fatalf("aws lambda get-policy: %v\n%s\n%s", err, stdout, stderr)
	}
	res, err = cb.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(arn), Payload: []byte(`{"name":"from-b"}`)})
	if err != nil || !strings.Contains(string(res.Payload), "from-b") {
		t.Fatalf("B invoking A's function by ARN after AddPermission: %v %v", res, err)
	}
	stdout, stderr, err = s.awsAs(t, b.env(), "lambda", "invoke", "--function-name", arn, "--cli-binary-format", "raw-in-base64-out", "--payload", `{"name":"b-cli"}`, "/dev/stdout")
	if err != nil || !strings.Contains(stdout, `"hello":"b-cli"`) {
		t.Fatalf("aws lambda invoke as B: %v\n%s\n%s", err, stdout, stderr)
	}
	denied("after AddPermission")
	_, err = cb.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(arn)})
	wantCode(t, "B GetPolicy", err, "AccessDeniedException", 403)

	// A deleted key stops working.
	if out, err := s.flintAs(t, root.env(), "keys", "delete", b.AccessKeyID); err != nil {
		t.Fatalf("flint keys delete: %v\n%s", err, out)
	}
	polltest.Check(t, 10*time.Second, "B's deleted key to be refused", func() error {
		_, err := cb.ListFunctions(ctx, &lambda.ListFunctionsInput{})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" {
			return fmt.Errorf("B after its key was deleted: %v", err)
		}
		return nil
	})
	if out, err := s.flintAs(t, root.env(), "keys", "list"); err != nil || strings.Contains(out, b.AccessKeyID) {
		t.Fatalf("flint keys list after delete: %v\n%s", err, out)
	}
}

// TestMetricsToken: with --auth required, /metrics refuses unsigned
// scrapes and wrong bearer tokens, and serves the bearer of the token in
// --metrics-token-file (what a Prometheus credentials_file sends).
func TestMetricsToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "metrics-token")
	token := "3f9c0a7d1e5b2c8f6a4d9e0b7c1f2a3d"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--auth", "required", "--metrics-token-file", tokenFile)
	scrape := func(authz string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.url()+"/metrics", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, authz := range []string{"", "Bearer wrong-token-wrong-token", "Bearer " + token + "x", "Basic " + token} {
		if code, _ := scrape(authz); code != http.StatusForbidden {
			t.Errorf("GET /metrics with Authorization %q: %d, want 403", authz, code)
		}
	}
	code, body := scrape("Bearer " + token)
	if code != http.StatusOK || !strings.Contains(body, "flint_") {
		t.Fatalf("GET /metrics with the token: %d\n%.300s", code, body)
	}
	// The token opens /metrics only.
	req, _ := http.NewRequest(http.MethodGet, s.url()+"/flint/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /flint/v1/stats with the metrics token: %d, want 403", resp.StatusCode)
	}

	// A short token is refused at start, naming the flag.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	out, err := exec.Command(flintBin, "server", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-token-file", short).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--metrics-token-file") {
		t.Fatalf("a 3-character token: err %v\n%s", err, out)
	}
}
