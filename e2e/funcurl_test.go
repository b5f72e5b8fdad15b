package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// curlResp is one response curl received.
type curlResp struct {
	status int
	header http.Header
	body   []byte
}

// curl runs curl -sS -i with args and parses the response it printed.
// *.localhost resolves to loopback in curl itself.
func curl(t *testing.T, args ...string) curlResp {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (apt-get install -y curl)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-i", "--max-time", "50"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
	}
	resp, err := http.ReadResponse(bufio.NewReader(&stdout), nil)
	if err != nil {
		t.Fatalf("curl %v: parse response: %v\n%s", args, err, stdout.String())
	}
	body, _ := io.ReadAll(resp.Body)
	return curlResp{status: resp.StatusCode, header: resp.Header, body: body}
}

func createNodeFn(t *testing.T, c *lambda.Client, name, dir string) {
	t.Helper()
	if _, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.Runtime(offeredRuntime(t, c, "nodejs")),
		Handler:      aws.String("index.handler"),
		Role:         aws.String("arn:aws:iam::000000000000:role/x"),
		MemorySize:   aws.Int32(256),
		Code:         &types.FunctionCode{ZipFile: zipTestdata(t, dir)},
	}); err != nil {
		t.Fatal(err)
	}
}

// urlConfigOut is the CLI's output of the URL config operations.
type urlConfigOut struct {
	FunctionUrl, FunctionArn, AuthType, CreationTime, LastModifiedTime, InvokeMode string
	Cors                                                                           *types.Cors
}

func (s *flintServer) cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, stderr, err := s.awsCLI(t, args...)
	if err != nil {
		t.Fatalf("aws %v: %v\n%s", args, err, stderr)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
	}
}

// TestFunctionURLs: a URL made with the AWS CLI reaches a Node function
// through curl with the 2.0 event and returns its status, headers,
// cookies and body; CORS preflights are answered by the URL; the URL
// follows its config through update, alias and deletion.
func TestFunctionURLs(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createNodeFn(t, c, "urlfn", "nodeurl")

	var created urlConfigOut
	s.cliJSON(t, &created, "lambda", "create-function-url-config", "--function-name", "urlfn", "--auth-type", "NONE",
		"--cors", `{"AllowOrigins":["https://app.example"],"AllowMethods":["GET","POST"],"AllowHeaders":["x-custom"],"ExposeHeaders":["x-echo"],"MaxAge":300}`)
	port := s.addr[strings.LastIndex(s.addr, ":")+1:]
	m := regexp.MustCompile(`^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:` + port + `/$`).FindStringSubmatch(created.FunctionUrl)
	if m == nil || created.AuthType != "NONE" || created.CreationTime == "" ||
		created.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:urlfn" || created.Cors == nil || *created.Cors.MaxAge != 300 {
		t.Fatalf("create-function-url-config: %+v", created)
	}
	url, id := created.FunctionUrl, m[1]
	// Debian's CLI (2.9) predates InvokeMode; the SDK reads it.
	if out, err := c.GetFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("urlfn")}); err != nil ||
		out.InvokeMode != types.InvokeModeBuffered || aws.ToString(out.FunctionUrl) != url {
		t.Fatalf("GetFunctionUrlConfig: %+v %v", out, err)
	}

	// The structured answer, with the event echoed in its body.
	r := curl(t, "-X", "POST", url+"echo/p%20q?a=1&a=2&b=x", "-H", "Cookie: c1=v1; c2=v2", "-H", "X-Dup: 1", "-H", "X-Dup: 2",
		"-H", "Origin: https://app.example", "-H", "Content-Type: application/json", "-A", "flint-test", "--data-binary", `{"k":"v"}`)
	if r.status != 201 || r.header.Get("X-Echo") != "yes" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("echo: %d %v %s", r.status, r.header, r.body)
	}
	if got := r.header.Values("Set-Cookie"); len(got) != 2 || got[0] != "s1=a; Path=/" || got[1] != "s2=b; HttpOnly" {
		t.Errorf("Set-Cookie = %q", got)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin = %q, want the URL's CORS origin (not the function's)", got)
	}
	if got := r.header.Get("Access-Control-Expose-Headers"); got != "x-echo" {
		t.Errorf("Access-Control-Expose-Headers = %q", got)
	}
	var ev struct {
		Version, RouteKey, RawPath, RawQueryString, Body string
		Cookies                                          []string
		Headers, QueryStringParameters                   map[string]string
		IsBase64Encoded                                  bool
		RequestContext                                   struct {
			AccountID, APIID, DomainName, DomainPrefix, RequestID, RouteKey, Stage, Time string
			TimeEpoch                                                                    int64
			HTTP                                                                         struct{ Method, Path, Protocol, SourceIP, UserAgent string }
		}
	}
	if err := json.Unmarshal(r.body, &ev); err != nil {
		t.Fatalf("event %s: %v", r.body, err)
	}
	rc := ev.RequestContext
	if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawPath != "/echo/p%20q" || ev.RawQueryString != "a=1&a=2&b=x" ||
		strings.Join(ev.Cookies, "|") != "c1=v1|c2=v2" || ev.Headers["x-dup"] != "1,2" || ev.Headers["content-type"] != "application/json" ||
		ev.Headers["cookie"] != "" || ev.QueryStringParameters["a"] != "1,2" || ev.QueryStringParameters["b"] != "x" ||
		ev.Body != `{"k":"v"}` || ev.IsBase64Encoded {
		t.Errorf("event: %s", r.body)
	}
	if rc.APIID != id || rc.DomainPrefix != id || rc.DomainName != id+".lambda-url.us-east-1.localhost" || rc.RouteKey != "$default" ||
		rc.Stage != "$default" || rc.RequestID == "" || rc.RequestID != r.header.Get("X-Amzn-RequestId") || rc.TimeEpoch <= 0 || rc.Time == "" ||
		rc.HTTP.Method != "POST" || rc.HTTP.Path != "/echo/p q" || rc.HTTP.Protocol != "HTTP/1.1" || rc.HTTP.SourceIP != "127.0.0.1" ||
		rc.HTTP.UserAgent != "flint-test" {
		t.Errorf("requestContext: %+v", rc)
	}

	// A binary body reaches the function base64-encoded.
	bin := filepath.Join(t.TempDir(), "bin")
	os.WriteFile(bin, []byte{0, 1, 2, 0xff}, 0o644)
	r = curl(t, url+"echo", "-H", "Content-Type: application/octet-stream", "--data-binary", "@"+bin)
	if err := json.Unmarshal(r.body, &ev); err != nil || !ev.IsBase64Encoded || ev.Body != "AAEC/w==" {
		t.Errorf("binary body: %d %s", r.status, r.body)
	}
	// Answers that are not the structured shape are 200 application/json.
	if r := curl(t, url+"string"); r.status != 200 || string(r.body) != "plain GET" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("bare string: %d %v %q", r.status, r.header, r.body)
	}
	if r := curl(t, url+"object"); r.status != 200 || string(r.body) != `{"plain":true}` {
		t.Errorf("bare object: %d %q", r.status, r.body)
	}
	if r := curl(t, url+"binary"); r.status != 200 || !bytes.Equal(r.body, []byte{0, 1, 2, 0xff}) || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("base64 answer: %d %v %q", r.status, r.header, r.body)
	}
	if r := curl(t, url+"fail"); r.status != 502 {
		t.Errorf("function error: %d %s, want 502", r.status, r.body)
	}

	// A CORS preflight is answered by the URL.
	r = curl(t, "-X", "OPTIONS", url+"echo", "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: POST",
		"-H", "Access-Control-Request-Headers: x-custom")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Access-Control-Allow-Methods") != "GET,POST" ||
		r.header.Get("Access-Control-Allow-Headers") != "x-custom" || r.header.Get("Access-Control-Max-Age") != "300" || len(r.body) != 0 {
		t.Errorf("preflight: %d %v %q", r.status, r.header, r.body)
	}
	r = curl(t, "-X", "OPTIONS", url+"echo", "-H", "Origin: https://other.example", "-H", "Access-Control-Request-Method: POST")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from a foreign origin: %d %v", r.status, r.header)
	}

	// Get, update, list; a second create conflicts.
	var got urlConfigOut
	s.cliJSON(t, &got, "lambda", "get-function-url-config", "--function-name", "urlfn")
	if got.FunctionUrl != url || got.LastModifiedTime == "" {
		t.Errorf("get: %+v", got)
	}
	s.cliJSON(t, &got, "lambda", "update-function-url-config", "--function-name", "urlfn", "--cors", `{"AllowOrigins":["*"]}`)
	if got.FunctionUrl != url || got.Cors == nil || len(got.Cors.AllowOrigins) != 1 || got.Cors.AllowOrigins[0] != "*" || got.AuthType != "NONE" {
		t.Errorf("update: %+v", got)
	}
	if r := curl(t, url+"string", "-H", "Origin: https://any.example"); r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("after update: Access-Control-Allow-Origin = %q", r.header.Get("Access-Control-Allow-Origin"))
	}
	_, stderr, err := s.awsCLI(t, "lambda", "create-function-url-config", "--function-name", "urlfn", "--auth-type", "NONE")
	if err == nil || !strings.Contains(stderr, "ResourceConflictException") {
		t.Errorf("second create: %v %s", err, stderr)
	}

	// An alias has its own URL; deleting the alias deletes it.
	s.cliJSON(t, nil, "lambda", "publish-version", "--function-name", "urlfn")
	s.cliJSON(t, nil, "lambda", "create-alias", "--function-name", "urlfn", "--name", "live", "--function-version", "1")
	var live urlConfigOut
	s.cliJSON(t, &live, "lambda", "create-function-url-config", "--function-name", "urlfn", "--qualifier", "live", "--auth-type", "NONE")
	if live.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:urlfn:live" || live.FunctionUrl == url {
		t.Errorf("alias url: %+v", live)
	}
	if r := curl(t, live.FunctionUrl+"string"); r.status != 200 || string(r.body) != "plain GET" {
		t.Errorf("alias url: %d %q", r.status, r.body)
	}
	var list struct{ FunctionUrlConfigs []urlConfigOut }
	s.cliJSON(t, &list, "lambda", "list-function-url-configs", "--function-name", "urlfn")
	if len(list.FunctionUrlConfigs) != 2 {
		t.Errorf("list: %+v", list)
	}
	_, stderr, err = s.awsCLI(t, "lambda", "create-function-url-config", "--function-name", "urlfn", "--qualifier", "1", "--auth-type", "NONE")
	if err == nil || !strings.Contains(stderr, "ValidationException") {
		t.Errorf("url on a version number: %v %s", err, stderr)
	}
	s.cliJSON(t, nil, "lambda", "delete-alias", "--function-name", "urlfn", "--name", "live")
	if r := curl(t, live.FunctionUrl); r.status != 404 {
		t.Errorf("url of a deleted alias: %d %s", r.status, r.body)
	}

	// Deleting the function deletes its URL.
	s.cliJSON(t, nil, "lambda", "delete-function", "--function-name", "urlfn")
	if r := curl(t, url); r.status != 404 {
		t.Errorf("url of a deleted function: %d %s", r.status, r.body)
	}
	createNodeFn(t, c, "urlfn", "nodeurl")
	if _, err := c.GetFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("urlfn")}); !isResourceNotFound(err) {
		t.Errorf("url config of a re-created function: %v", err)
	}
	if r := curl(t, url); r.status != 404 {
		t.Errorf("old url after re-creating the function: %d %s", r.status, r.body)
	}
}

// TestFunctionURLAuthIAM: with --auth required an AWS_IAM URL refuses
// unsigned and wrongly signed requests and serves SigV4-signed ones
// (curl --aws-sigv4, service lambda); a NONE URL needs no signature.
func TestFunctionURLAuthIAM(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth", "required")
	root := s.rootCreds(t)
	c := s.lambdaAs(root)
	createNodeFn(t, c, "iamfn", "nodeurl")
	out, err := c.CreateFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("iamfn"), AuthType: types.FunctionUrlAuthTypeAwsIam})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(out.FunctionUrl)
	if r := curl(t, url+"string"); r.status != 403 || !strings.Contains(string(r.body), "Forbidden") {
		t.Errorf("unsigned: %d %s, want 403 Forbidden", r.status, r.body)
	}
	if r := curl(t, url+"string", "--aws-sigv4", "aws:amz:us-east-1:lambda", "--user", root.AccessKeyID+":wrong"); r.status != 403 {
		t.Errorf("wrong secret: %d %s, want 403", r.status, r.body)
	}
	r := curl(t, url+"echo", "--aws-sigv4", "aws:amz:us-east-1:lambda", "--user", root.AccessKeyID+":"+root.SecretAccessKey)
	if r.status != 201 {
		t.Fatalf("signed: %d %s", r.status, r.body)
	}
	// A form POST is still signed for lambda (the SQS query API looks alike).
	if r := curl(t, url+"echo", "--aws-sigv4", "aws:amz:us-east-1:lambda", "--user", root.AccessKeyID+":"+root.SecretAccessKey, "-d", "a=b"); r.status != 201 {
		t.Errorf("signed form POST: %d %s", r.status, r.body)
	}
	var ev struct {
		RequestContext struct {
			AccountID  string
			Authorizer struct {
				IAM struct{ AccessKey, AccountID string }
			}
		}
	}
	if err := json.Unmarshal(r.body, &ev); err != nil || ev.RequestContext.AccountID != root.Account ||
		ev.RequestContext.Authorizer.IAM.AccessKey != root.AccessKeyID {
		t.Errorf("signed request's event: %s", r.body)
	}
	if _, err := c.UpdateFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.UpdateFunctionUrlConfigInput{
		FunctionName: aws.String("iamfn"), AuthType: types.FunctionUrlAuthTypeNone}); err != nil {
		t.Fatal(err)
	}
	if r := curl(t, url+"string"); r.status != 200 {
		t.Errorf("unsigned request to a NONE url: %d %s", r.status, r.body)
	}
}
