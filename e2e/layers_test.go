package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/flintdev/flint/internal/polltest"
)

// download fetches a Code.Location / Content.Location link with a plain
// HTTP client (no AWS credentials, no signing).
func download(t *testing.T, link string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func publishLayer(t *testing.T, c *lambda.Client, name string, zip []byte, runtimes ...types.Runtime) *lambda.PublishLayerVersionOutput {
	t.Helper()
	out, err := c.PublishLayerVersion(ctxT(t, 60*time.Second), &lambda.PublishLayerVersionInput{
		LayerName:          aws.String(name),
		Content:            &types.LayerVersionContentInput{ZipFile: zip},
		CompatibleRuntimes: runtimes,
		Description:        aws.String("layer " + name),
	})
	if err != nil {
		t.Fatalf("PublishLayerVersion %s: %v", name, err)
	}
	return out
}

func wantAPIError(t *testing.T, err error, code, msgPart string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msgPart) {
		t.Fatalf("error = %v, want %s containing %q", err, code, msgPart)
	}
}

// TestLayersSDK publishes layers, runs a Python and a Node function that
// import from them, and checks the layer API's shapes and errors, all with
// aws-sdk-go-v2.
func TestLayersSDK(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	python := offeredRuntime(t, c, "python3.")
	node := offeredRuntime(t, c, "nodejs")
	role := aws.String("arn:aws:iam::000000000000:role/x")

	zipA := zipFiles(map[string]zipEntry{
		"python/greet.py":  {data: []byte("WHO = 'layer-a'\n")},
		"python/only_a.py": {data: []byte("A = 'only in a'\n")},
		"bin/tool":         {data: []byte("#!/bin/sh\necho tool\n"), mode: 0o755},
	})
	zipB := zipFiles(map[string]zipEntry{
		"python/greet.py": {data: []byte("WHO = 'layer-b'\n")},
		"python/lib/" + python + "/site-packages/sitepkg.py": {data: []byte("X = 'site-packages'\n")},
	})
	nodeDir := "node" + strings.TrimSuffix(strings.TrimPrefix(node, "nodejs"), ".x")
	zipN := zipFiles(map[string]zipEntry{
		"nodejs/node_modules/leftpad/index.js":             {data: []byte("module.exports = (s) => '>' + s;\n")},
		"nodejs/" + nodeDir + "/node_modules/ver/index.js": {data: []byte("module.exports = 'versioned dir';\n")},
	})
	a := publishLayer(t, c, "py-a", zipA, types.Runtime(python))
	b := publishLayer(t, c, "py-b", zipB, types.Runtime(python))
	n := publishLayer(t, c, "node-lib", zipN, types.Runtime(node))
	if a.Version != 1 || aws.ToString(a.LayerVersionArn) != "arn:aws:lambda:us-east-1:000000000000:layer:py-a:1" ||
		aws.ToString(a.LayerArn) != "arn:aws:lambda:us-east-1:000000000000:layer:py-a" || a.Content == nil ||
		a.Content.CodeSize != int64(len(zipA)) || aws.ToString(a.Content.CodeSha256) == "" || !strings.HasSuffix(aws.ToString(a.CreatedDate), "+0000") {
		t.Fatalf("PublishLayerVersion = %+v", a)
	}

	t.Run("content location", func(t *testing.T) {
		st, body := download(t, aws.ToString(a.Content.Location))
		if st != 200 || !bytes.Equal(body, zipA) {
			t.Fatalf("layer download: %d, %d bytes (want %d)", st, len(body), len(zipA))
		}
	})

	pyCode := zipFiles(map[string]zipEntry{"app.py": {data: []byte(`import os, shutil
import greet, only_a, sitepkg

def handler(event, context):
    try:
        open('/opt/new-file', 'w')
        writable = True
    except OSError:
        writable = False
    return {"who": greet.WHO, "a": only_a.A, "site": sitepkg.X, "tool": shutil.which("tool"),
            "ld": os.environ.get("LD_LIBRARY_PATH", ""), "optWritable": writable}
`)}})
	created, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String("py-layers"), Runtime: types.Runtime(python), Handler: aws.String("app.handler"),
		Role: role, MemorySize: aws.Int32(256), Code: &types.FunctionCode{ZipFile: pyCode},
		Layers: []string{aws.ToString(a.LayerVersionArn), aws.ToString(b.LayerVersionArn)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Layers) != 2 || aws.ToString(created.Layers[0].Arn) != aws.ToString(a.LayerVersionArn) || created.Layers[1].CodeSize != int64(len(zipB)) {
		t.Fatalf("CreateFunction Layers = %+v", created.Layers)
	}
	type pyReply struct {
		Who, A, Site, Tool, Ld string
		OptWritable            bool
	}
	runPy := func() pyReply {
		t.Helper()
		out := invoke(t, c, "py-layers", map[string]any{}, true)
		if out.FunctionError != nil {
			t.Fatalf("%s: %s", *out.FunctionError, out.Payload)
		}
		var r pyReply
		if err := json.Unmarshal(out.Payload, &r); err != nil {
			t.Fatalf("payload %s: %v", out.Payload, err)
		}
		return r
	}
	r := runPy()
	if r.Who != "layer-b" || r.A != "only in a" || r.Site != "site-packages" || r.Tool != "/opt/bin/tool" ||
		!strings.Contains(r.Ld, "/opt/lib") || r.OptWritable {
		t.Fatalf("python with layers [a, b]: %+v", r)
	}
	// The other order: the later layer wins, in a new sandbox.
	upd, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("py-layers"),
		Layers:       []string{aws.ToString(b.LayerVersionArn), aws.ToString(a.LayerVersionArn)},
	})
	if err != nil || len(upd.Layers) != 2 {
		t.Fatalf("UpdateFunctionConfiguration: %v", err)
	}
	if r := runPy(); r.Who != "layer-a" {
		t.Fatalf("python with layers [b, a]: %+v", r)
	}
	cfg, err := c.GetFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("py-layers")})
	if err != nil || len(cfg.Layers) != 2 || aws.ToString(cfg.Layers[0].Arn) != aws.ToString(b.LayerVersionArn) || cfg.Layers[0].CodeSize != int64(len(zipB)) {
		t.Fatalf("GetFunctionConfiguration Layers = %+v, %v", cfg, err)
	}

	t.Run("node", func(t *testing.T) {
		code := zipFiles(map[string]zipEntry{"index.js": {data: []byte(
			"const lp = require('leftpad'); const ver = require('ver');\n" +
				"exports.handler = async () => ({ lp: lp('x'), ver });\n")}})
		if _, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
			FunctionName: aws.String("node-layers"), Runtime: types.Runtime(node), Handler: aws.String("index.handler"),
			Role: role, MemorySize: aws.Int32(256), Code: &types.FunctionCode{ZipFile: code},
			Layers: []string{aws.ToString(n.LayerVersionArn)},
		}); err != nil {
			t.Fatal(err)
		}
		out := invoke(t, c, "node-layers", map[string]any{}, true)
		if out.FunctionError != nil || string(out.Payload) != `{"lp":">x","ver":"versioned dir"}` {
			t.Fatalf("node with a layer: %v %s", out.FunctionError, out.Payload)
		}
	})

	t.Run("code location", func(t *testing.T) {
		got, err := c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("py-layers")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(got.Code.RepositoryType) != "S3" || aws.ToString(got.Code.Location) == "" {
			t.Fatalf("Code = %+v", got.Code)
		}
		link := aws.ToString(got.Code.Location)
		st, body := download(t, link)
		if st != 200 || !bytes.Equal(body, pyCode) {
			t.Fatalf("code download: %d, %d bytes (want %d)", st, len(body), len(pyCode))
		}
		u, _ := url.Parse(link)
		q := u.Query()
		q.Set("X-Amz-Expires", "86400")
		u.RawQuery = q.Encode()
		st, body = download(t, u.String())
		if st != 403 || !strings.Contains(string(body), "<Code>SignatureDoesNotMatch</Code>") {
			t.Fatalf("tampered link: %d %s", st, body)
		}
	})

	t.Run("layer API", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		a2 := publishLayer(t, c, "py-a", zipB, types.Runtime(python), types.RuntimeNodejs20x)
		if a2.Version != 2 {
			t.Fatalf("second version numbered %d", a2.Version)
		}
		got, err := c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1)})
		if err != nil || aws.ToString(got.Description) != "layer py-a" || got.CompatibleRuntimes[0] != types.Runtime(python) {
			t.Fatalf("GetLayerVersion = %+v, %v", got, err)
		}
		byArn, err := c.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: a2.LayerVersionArn})
		if err != nil || byArn.Version != 2 {
			t.Fatalf("GetLayerVersionByArn = %+v, %v", byArn, err)
		}
		_, err = c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(9)})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Fatalf("GetLayerVersion 9 = %v", err)
		}
		vs, err := c.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("py-a"), MaxItems: aws.Int32(1)})
		if err != nil || len(vs.LayerVersions) != 1 || vs.LayerVersions[0].Version != 2 || aws.ToString(vs.NextMarker) == "" {
			t.Fatalf("ListLayerVersions page 1 = %+v, %v", vs, err)
		}
		vs2, err := c.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("py-a"), MaxItems: aws.Int32(1), Marker: vs.NextMarker})
		if err != nil || len(vs2.LayerVersions) != 1 || vs2.LayerVersions[0].Version != 1 || vs2.NextMarker != nil {
			t.Fatalf("ListLayerVersions page 2 = %+v, %v", vs2, err)
		}
		nodeOnly, err := c.ListLayerVersions(ctx, &lambda.ListLayerVersionsInput{LayerName: aws.String("py-a"), CompatibleRuntime: types.RuntimeNodejs20x})
		if err != nil || len(nodeOnly.LayerVersions) != 1 || nodeOnly.LayerVersions[0].Version != 2 {
			t.Fatalf("ListLayerVersions nodejs20.x = %+v, %v", nodeOnly, err)
		}
		ls, err := c.ListLayers(ctx, &lambda.ListLayersInput{CompatibleRuntime: types.Runtime(python)})
		if err != nil || len(ls.Layers) != 2 || aws.ToString(ls.Layers[0].LayerName) != "py-a" || ls.Layers[0].LatestMatchingVersion.Version != 2 {
			t.Fatalf("ListLayers python = %+v, %v", ls, err)
		}
		all, err := c.ListLayers(ctx, &lambda.ListLayersInput{MaxItems: aws.Int32(2)})
		if err != nil || len(all.Layers) != 2 || aws.ToString(all.NextMarker) == "" {
			t.Fatalf("ListLayers page = %+v, %v", all, err)
		}

		perm, err := c.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{
			LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1), StatementId: aws.String("xaccount"),
			Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("210987654321"),
		})
		if err != nil || !strings.Contains(aws.ToString(perm.Statement), `"arn:aws:iam::210987654321:root"`) || aws.ToString(perm.RevisionId) == "" {
			t.Fatalf("AddLayerVersionPermission = %+v, %v", perm, err)
		}
		_, err = c.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{
			LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1), StatementId: aws.String("xaccount"),
			Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("*"),
		})
		var conflict *types.ResourceConflictException
		if !errors.As(err, &conflict) {
			t.Fatalf("duplicate statement = %v", err)
		}
		_, err = c.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{
			LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1), StatementId: aws.String("other"),
			Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("*"), RevisionId: aws.String("stale"),
		})
		var pre *types.PreconditionFailedException
		if !errors.As(err, &pre) {
			t.Fatalf("stale revision = %v", err)
		}
		pol, err := c.GetLayerVersionPolicy(ctx, &lambda.GetLayerVersionPolicyInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1)})
		if err != nil || aws.ToString(pol.RevisionId) != aws.ToString(perm.RevisionId) || !strings.Contains(aws.ToString(pol.Policy), `"Sid":"xaccount"`) {
			t.Fatalf("GetLayerVersionPolicy = %+v, %v", pol, err)
		}
		if _, err := c.RemoveLayerVersionPermission(ctx, &lambda.RemoveLayerVersionPermissionInput{
			LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1), StatementId: aws.String("xaccount")}); err != nil {
			t.Fatal(err)
		}
		_, err = c.GetLayerVersionPolicy(ctx, &lambda.GetLayerVersionPolicyInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(1)})
		if !errors.As(err, &nf) {
			t.Fatalf("policy after removing its only statement = %v", err)
		}

		if _, err := c.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(2)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(2)}); err != nil {
			t.Fatalf("deleting again: %v (Lambda's DeleteLayerVersion is idempotent)", err)
		}
		if _, err := c.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("py-a"), VersionNumber: aws.Int64(2)}); !errors.As(err, &nf) {
			t.Fatalf("deleted version: %v", err)
		}
		_, err = c.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("s3"),
			Content: &types.LayerVersionContentInput{S3Bucket: aws.String("b"), S3Key: aws.String("k")}})
		wantAPIError(t, err, "InvalidParameterValueException", "S3")
	})

	t.Run("limits", func(t *testing.T) {
		ctx := ctxT(t, 120*time.Second)
		six := make([]string, 6)
		for i := range six {
			six[i] = aws.ToString(publishLayer(t, c, "many-"+string(rune('a'+i)), zipA).LayerVersionArn)
		}
		_, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("py-layers"), Layers: six})
		wantAPIError(t, err, "InvalidParameterValueException", "Cannot reference more than 5 layers.")
		_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("py-layers"),
			Layers: []string{"arn:aws:lambda:us-east-1:000000000000:layer:py-a:77"}})
		wantAPIError(t, err, "InvalidParameterValueException", "Layer version arn:aws:lambda:us-east-1:000000000000:layer:py-a:77 does not exist.")
		_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("py-layers"),
			Layers: []string{"not-an-arn"}})
		wantAPIError(t, err, "ValidationException", "layers")

		// 100 MB + 100 MB of layers (zeros: tiny zips) and 60 MB of code
		// exceed the 250 MB that code and layers may take together.
		zeros := func(name string, mb int) []byte {
			return zipFiles(map[string]zipEntry{name: {data: make([]byte, mb<<20)}})
		}
		big1 := publishLayer(t, c, "big-1", zeros("one", 100))
		big2 := publishLayer(t, c, "big-2", zeros("two", 100))
		_, err = c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("too-big"), Runtime: types.Runtime(python), Handler: aws.String("app.handler"), Role: role,
			Code:   &types.FunctionCode{ZipFile: zeros("app.py", 60)},
			Layers: []string{aws.ToString(big1.LayerVersionArn), aws.ToString(big2.LayerVersionArn)},
		})
		wantAPIError(t, err, "InvalidParameterValueException", "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. The actual size is 272629760 bytes.")
		// Within the limit it is accepted; growing the code past it is not.
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("big-ok"), Runtime: types.Runtime(python), Handler: aws.String("app.handler"), Role: role,
			Code:   &types.FunctionCode{ZipFile: pyCode},
			Layers: []string{aws.ToString(big1.LayerVersionArn), aws.ToString(big2.LayerVersionArn)},
		}); err != nil {
			t.Fatal(err)
		}
		_, err = c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("big-ok"), ZipFile: zeros("app.py", 60)})
		wantAPIError(t, err, "InvalidParameterValueException", "Function code combined with layers exceeds")
	})
}

// TestCodeLocationExpires checks that a download link stops working once
// its lifetime is over (shortened here with --code-url-ttl).
func TestCodeLocationExpires(t *testing.T) {
	s := startServer(t, t.TempDir(), "--code-url-ttl", "1s")
	c := s.lambda()
	createGoFn(t, c, "expiring", nil)
	got, err := c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("expiring")})
	if err != nil {
		t.Fatal(err)
	}
	link := aws.ToString(got.Code.Location)
	polltest.Check(t, 30*time.Second, "the link to expire", func() error {
		st, body := download(t, link)
		if st == 403 && strings.Contains(string(body), "<Message>Request has expired</Message>") {
			return nil
		}
		return fmt.Errorf("link still answers %d", st)
	})
}

// TestLayersAWSCLI drives the layer operations with Debian's AWS CLI.
func TestLayersAWSCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "layer.zip")
	layerZip := zipFiles(map[string]zipEntry{"bin/hello": {data: []byte("#!/bin/sh\necho hello from the layer\n"), mode: 0o755}})
	if err := os.WriteFile(zipPath, layerZip, 0o644); err != nil {
		t.Fatal(err)
	}
	fnZip := filepath.Join(dir, "fn.zip")
	if err := os.WriteFile(fnZip, goFnZip, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) map[string]any {
		t.Helper()
		out, errOut, err := s.awsCLI(t, append([]string{"lambda"}, args...)...)
		if err != nil {
			t.Fatalf("aws lambda %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		var m map[string]any
		if strings.TrimSpace(out) != "" {
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("aws lambda %s: %v\n%s", args[0], err, out)
			}
		}
		return m
	}
	pub := run("publish-layer-version", "--layer-name", "tools", "--zip-file", "fileb://"+zipPath,
		"--compatible-runtimes", "provided.al2023", "--compatible-architectures", "x86_64", "--license-info", "MIT")
	arn, _ := pub["LayerVersionArn"].(string)
	if arn != "arn:aws:lambda:us-east-1:000000000000:layer:tools:1" || pub["LicenseInfo"] != "MIT" {
		t.Fatalf("publish-layer-version: %v", pub)
	}
	if got := run("get-layer-version", "--layer-name", "tools", "--version-number", "1"); got["Version"] != float64(1) {
		t.Fatalf("get-layer-version: %v", got)
	}
	if got := run("get-layer-version-by-arn", "--arn", arn); got["LayerVersionArn"] != arn {
		t.Fatalf("get-layer-version-by-arn: %v", got)
	}
	if got := run("list-layers", "--compatible-runtime", "provided.al2023"); len(got["Layers"].([]any)) != 1 {
		t.Fatalf("list-layers: %v", got)
	}
	if got := run("list-layers", "--compatible-runtime", "python3.12"); len(got["Layers"].([]any)) != 0 {
		t.Fatalf("list-layers python3.12: %v", got)
	}
	if got := run("list-layer-versions", "--layer-name", "tools"); len(got["LayerVersions"].([]any)) != 1 {
		t.Fatalf("list-layer-versions: %v", got)
	}
	perm := run("add-layer-version-permission", "--layer-name", "tools", "--version-number", "1",
		"--statement-id", "everyone", "--action", "lambda:GetLayerVersion", "--principal", "*")
	if !strings.Contains(perm["Statement"].(string), `"Principal":"*"`) {
		t.Fatalf("add-layer-version-permission: %v", perm)
	}
	if pol := run("get-layer-version-policy", "--layer-name", "tools", "--version-number", "1"); pol["RevisionId"] != perm["RevisionId"] {
		t.Fatalf("get-layer-version-policy: %v", pol)
	}
	run("remove-layer-version-permission", "--layer-name", "tools", "--version-number", "1", "--statement-id", "everyone")

	fn := run("create-function", "--function-name", "with-layer", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--zip-file", "fileb://"+fnZip, "--role", "arn:aws:iam::000000000000:role/x", "--layers", arn)
	if ls, _ := fn["Layers"].([]any); len(ls) != 1 || ls[0].(map[string]any)["Arn"] != arn {
		t.Fatalf("create-function --layers: %v", fn)
	}
	got := run("get-function", "--function-name", "with-layer")
	code := got["Code"].(map[string]any)
	st, body := download(t, code["Location"].(string))
	if code["RepositoryType"] != "S3" || st != 200 || !bytes.Equal(body, goFnZip) {
		t.Fatalf("get-function Code %v: download %d, %d bytes", code, st, len(body))
	}
	run("delete-layer-version", "--layer-name", "tools", "--version-number", "1")
	_, errOut, err := s.awsCLI(t, "lambda", "get-layer-version", "--layer-name", "tools", "--version-number", "1")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Fatalf("get-layer-version after delete: %v %s", err, errOut)
	}
	// A function keeps its layer after the version is deleted, as in Lambda.
	out := invoke(t, s.lambda(), "with-layer", map[string]any{"name": "x"}, false)
	if out.FunctionError != nil {
		t.Fatalf("invoke after layer deletion: %s", out.Payload)
	}
}

// TestLayersAcrossAccounts (with --auth required): a layer belongs to the
// account that published it; another account may use a version only once
// its policy grants it, and a function of that account then imports from
// it. Download links work unsigned (they carry their own signature).
func TestLayersAcrossAccounts(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth", "required")
	root := s.rootCreds(t)
	mkKey := func(account string) creds {
		out, err := s.flintAs(t, root.env(), "keys", "create", "--account", account)
		var k creds
		if err != nil || json.Unmarshal([]byte(out), &k) != nil || k.Account != account {
			t.Fatalf("flint keys create: %v\n%s", err, out)
		}
		return k
	}
	ca, cb := s.lambdaAs(mkKey("111111111111")), s.lambdaAs(mkKey("222222222222"))
	python := offeredRuntime(t, cb, "python3.")
	ctx := ctxT(t, 2*time.Minute)
	layerZip := zipFiles(map[string]zipEntry{"python/shared.py": {data: []byte("WHO = 'owned by A'\n")}})
	pub := publishLayer(t, ca, "shared", layerZip)
	if got := aws.ToString(pub.LayerVersionArn); got != "arn:aws:lambda:us-east-1:111111111111:layer:shared:1" {
		t.Fatalf("A's layer ARN: %s", got)
	}
	if st, body := download(t, aws.ToString(pub.Content.Location)); st != 200 || !bytes.Equal(body, layerZip) {
		t.Fatalf("unsigned download under --auth required: %d", st)
	}
	if ls, err := cb.ListLayers(ctx, &lambda.ListLayersInput{}); err != nil || len(ls.Layers) != 0 {
		t.Fatalf("B lists A's layers: %+v, %v", ls, err)
	}
	create := func() error {
		_, err := cb.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String("b-fn"), Runtime: types.Runtime(python), Handler: aws.String("app.handler"),
			Role: aws.String("arn:aws:iam::222222222222:role/x"), MemorySize: aws.Int32(256), Layers: []string{aws.ToString(pub.LayerVersionArn)},
			Code: &types.FunctionCode{ZipFile: zipFiles(map[string]zipEntry{"app.py": {data: []byte(
				"import shared\ndef handler(e, c):\n    return shared.WHO\n")}})},
		})
		return err
	}
	wantAPIError(t, create(), "AccessDeniedException", "lambda:GetLayerVersion")
	_, err := cb.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: pub.LayerVersionArn})
	wantAPIError(t, err, "AccessDeniedException", "lambda:GetLayerVersion")
	if _, err := ca.AddLayerVersionPermission(ctx, &lambda.AddLayerVersionPermissionInput{
		LayerName: aws.String("shared"), VersionNumber: aws.Int64(1), StatementId: aws.String("b"),
		Action: aws.String("lambda:GetLayerVersion"), Principal: aws.String("222222222222"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := create(); err != nil {
		t.Fatalf("B using A's layer once granted: %v", err)
	}
	out := invoke(t, cb, "b-fn", map[string]any{}, false)
	if out.FunctionError != nil || string(out.Payload) != `"owned by A"` {
		t.Fatalf("B's function with A's layer: %v %s", out.FunctionError, out.Payload)
	}
	_, err = cb.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{
		LayerName: aws.String("arn:aws:lambda:us-east-1:111111111111:layer:shared"), VersionNumber: aws.Int64(1)})
	wantAPIError(t, err, "AccessDeniedException", "lambda:DeleteLayerVersion")
}

// TestCodeLocationSurvivesRestart: the signing secret lives in the
// backbone, so a link made before a restart still works after it.
func TestCodeLocationSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	createGoFn(t, s.lambda(), "kept", nil)
	got, err := s.lambda().GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("kept")})
	if err != nil {
		t.Fatal(err)
	}
	link := aws.ToString(got.Code.Location)
	s.stop()
	s2 := startServer(t, data)
	moved := strings.Replace(link, s.url(), s2.url(), 1)
	if st, body := download(t, moved); st != 200 || !bytes.Equal(body, goFnZip) {
		t.Fatalf("link after restart: %d, %d bytes", st, len(body))
	}
}
