package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLI drives Flint with Debian's AWS CLI, exactly as a user would.
func TestAWSCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "fn.zip")
	if err := os.WriteFile(zipPath, goFnZip, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := s.awsCLI(t, args...)
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}

	var fn struct{ FunctionName, FunctionArn, Runtime, State, CodeSha256 string }
	if err := json.Unmarshal([]byte(run("lambda", "create-function", "--function-name", "hello",
		"--runtime", "provided.al2023", "--handler", "bootstrap", "--zip-file", "fileb://"+zipPath,
		"--role", "arn:aws:iam::000000000000:role/x")), &fn); err != nil {
		t.Fatal(err)
	}
	if fn.FunctionName != "hello" || fn.State != "Pending" || fn.CodeSha256 == "" {
		t.Errorf("create-function: %+v", fn)
	}
	// Pending until its code is unpacked, then Active: the CLI's waiter.
	run("lambda", "wait", "function-active-v2", "--function-name", "hello")

	outFile := filepath.Join(dir, "out.json")
	var inv struct {
		StatusCode      int
		LogResult       string
		ExecutedVersion string
		FunctionError   string
	}
	json.Unmarshal([]byte(run("lambda", "invoke", "--function-name", "hello", "--cli-binary-format", "raw-in-base64-out",
		"--payload", `{"name":"cli"}`, "--log-type", "Tail", outFile)), &inv)
	if inv.StatusCode != 200 || inv.ExecutedVersion != "$LATEST" || inv.FunctionError != "" {
		t.Errorf("invoke: %+v", inv)
	}
	tail, _ := base64.StdEncoding.DecodeString(inv.LogResult)
	for _, want := range []string{"START RequestId:", "END RequestId:", "REPORT RequestId:"} {
		if !strings.Contains(string(tail), want) {
			t.Errorf("LogResult lacks %q:\n%s", want, tail)
		}
	}
	b, _ := os.ReadFile(outFile)
	var r goReply
	if json.Unmarshal(b, &r); r.Hello != "cli" {
		t.Errorf("response file: %s", b)
	}

	json.Unmarshal([]byte(run("lambda", "invoke", "--function-name", "hello", "--cli-binary-format", "raw-in-base64-out",
		"--payload", `{"action":"error","name":"cli"}`, outFile)), &inv)
	if inv.FunctionError != "Unhandled" {
		t.Errorf("error invoke: %+v", inv)
	}

	var list struct {
		Functions []struct{ FunctionName string }
	}
	json.Unmarshal([]byte(run("lambda", "list-functions")), &list)
	if len(list.Functions) != 1 || list.Functions[0].FunctionName != "hello" {
		t.Errorf("list-functions: %+v", list)
	}
	var get struct{ Configuration struct{ FunctionName string } }
	json.Unmarshal([]byte(run("lambda", "get-function", "--function-name", "hello")), &get)
	if get.Configuration.FunctionName != "hello" {
		t.Errorf("get-function: %+v", get)
	}
	run("lambda", "update-function-configuration", "--function-name", "hello", "--timeout", "10", "--memory-size", "512")
	var cfg struct {
		Timeout, MemorySize int
	}
	json.Unmarshal([]byte(run("lambda", "get-function-configuration", "--function-name", "hello")), &cfg)
	if cfg.Timeout != 10 || cfg.MemorySize != 512 {
		t.Errorf("after update: %+v", cfg)
	}
	run("lambda", "wait", "function-updated-v2", "--function-name", "hello")

	// Tags, and the settings tools read for every function.
	arn := "arn:aws:lambda:us-east-1:000000000000:function:hello"
	run("lambda", "tag-resource", "--resource", arn, "--tags", "team=core,env=dev")
	run("lambda", "untag-resource", "--resource", arn, "--tag-keys", "env")
	var tags struct{ Tags map[string]string }
	json.Unmarshal([]byte(run("lambda", "list-tags", "--resource", arn)), &tags)
	if len(tags.Tags) != 1 || tags.Tags["team"] != "core" {
		t.Errorf("list-tags: %+v", tags)
	}
	// (Debian's CLI, 2.9, predates the recursion config and the
	// FunctionArn of the runtime management config; the SDK test covers
	// them.)
	var rm struct{ UpdateRuntimeOn string }
	json.Unmarshal([]byte(run("lambda", "put-runtime-management-config", "--function-name", "hello", "--update-runtime-on", "FunctionUpdate")), &rm)
	json.Unmarshal([]byte(run("lambda", "get-runtime-management-config", "--function-name", "hello")), &rm)
	if rm.UpdateRuntimeOn != "FunctionUpdate" {
		t.Errorf("get-runtime-management-config: %+v", rm)
	}
	var csc struct{ CodeSigningConfigArn, FunctionName string }
	json.Unmarshal([]byte(run("lambda", "get-function-code-signing-config", "--function-name", "hello")), &csc)
	if csc.FunctionName != "hello" || csc.CodeSigningConfigArn != "" {
		t.Errorf("get-function-code-signing-config: %+v", csc)
	}
	// Event invoke configs: an alias is a qualifier. (The CLI checks the
	// ranges itself; the SDK test sees the server's ValidationException.)
	run("lambda", "publish-version", "--function-name", "hello")
	run("lambda", "create-alias", "--function-name", "hello", "--name", "beta", "--function-version", "1")
	var eic struct{ FunctionArn string }
	json.Unmarshal([]byte(run("lambda", "put-function-event-invoke-config", "--function-name", "hello", "--qualifier", "beta",
		"--maximum-retry-attempts", "1")), &eic)
	if eic.FunctionArn != arn+":beta" {
		t.Errorf("put-function-event-invoke-config: %+v", eic)
	}
	_, errOut, err := s.awsCLI(t, "lambda", "put-function-event-invoke-config", "--function-name", "hello", "--qualifier", "nosuch", "--maximum-retry-attempts", "1")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("event invoke config of an unknown alias: err %v, stderr %q", err, errOut)
	}
	_, errOut, err = s.awsCLI(t, "lambda", "create-code-signing-config", "--allowed-publishers",
		"SigningProfileVersionArns=arn:aws:signer:us-east-1:000000000000:/signing-profiles/p/v")
	if err == nil || !strings.Contains(errOut, "InvalidParameterValueException") || !strings.Contains(errOut, "not supported by Flint") {
		t.Errorf("create-code-signing-config: err %v, stderr %q", err, errOut)
	}
	run("lambda", "delete-function", "--function-name", "hello")

	_, errOut, err = s.awsCLI(t, "lambda", "get-function", "--function-name", "hello")
	if err == nil || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("get-function after delete: err %v, stderr %q", err, errOut)
	}
	_, errOut, err = s.awsCLI(t, "lambda", "create-function", "--function-name", "bad", "--runtime", "provided.al2023",
		"--handler", "bootstrap", "--zip-file", "fileb://"+zipPath, "--role", "arn:aws:iam::000000000000:role/x", "--timeout", "901")
	if err == nil || !strings.Contains(errOut, "ValidationException") || !strings.Contains(errOut, "less than or equal to 900") {
		t.Errorf("create with timeout 901: err %v, stderr %q", err, errOut)
	}
	_, errOut, err = s.awsCLI(t, "lambda", "create-function", "--function-name", "bad", "--runtime", "cobol85",
		"--handler", "bootstrap", "--zip-file", "fileb://"+zipPath, "--role", "arn:aws:iam::000000000000:role/x")
	if err == nil || !strings.Contains(errOut, "InvalidParameterValueException") || !strings.Contains(errOut, "provided.al2023") {
		t.Errorf("create with an unknown runtime: err %v, stderr %q", err, errOut)
	}
}
