package frontend

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAWSCLI drives the API with the AWS CLI, as users do: Debian's v2
// (/usr/bin/aws, what the end-to-end tests use) and whatever "aws" is
// first on PATH, when that is another installation.
func TestAWSCLI(t *testing.T) {
	var bins []string
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		bins = append(bins, "/usr/bin/aws")
	}
	if p, err := exec.LookPath("aws"); err == nil {
		if rp, _ := filepath.EvalSymlinks(p); rp != "/usr/bin/aws" && p != "/usr/bin/aws" {
			bins = append(bins, p)
		}
	}
	if len(bins) == 0 {
		t.Skip("skipping: the aws CLI is not installed (apt-get install awscli)")
	}
	for _, bin := range bins {
		t.Run(bin, func(t *testing.T) { testAWSCLI(t, bin) })
	}
}

func testAWSCLI(t *testing.T, awsBin string) {
	ver, err := exec.Command(awsBin, "--version").CombinedOutput()
	if err != nil {
		t.Skipf("skipping: %s --version fails: %v", awsBin, err)
	}
	v2 := strings.HasPrefix(string(ver), "aws-cli/2")
	e := newEnv(t)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "fn.zip")
	if err := os.WriteFile(zipPath, zipOf(t, map[string]string{"bootstrap": "x"}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsBin, append([]string{"--endpoint-url", e.srv.URL, "--region", "us-east-1", "--output", "json"}, args...)...)
		cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
			"AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}

	out, stderr, err := run("lambda", "create-function", "--function-name", "cli-fn", "--runtime", "provided.al2023",
		"--role", testRole, "--handler", "bootstrap", "--zip-file", "fileb://"+zipPath,
		"--environment", "Variables={COLOR=blue}")
	if err != nil {
		t.Fatalf("create-function: %v\n%s", err, stderr)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(out), &cfg); err != nil || cfg["FunctionName"] != "cli-fn" || cfg["State"] != "Pending" || cfg["StateReasonCode"] != "Creating" {
		t.Fatalf("create-function printed %s (%v)", out, err)
	}
	// The CLI's waiters pass: Pending → Active, then an update's
	// InProgress → Successful.
	if _, stderr, err := run("lambda", "wait", "function-active-v2", "--function-name", "cli-fn"); err != nil {
		t.Fatalf("wait function-active-v2: %v\n%s", err, stderr)
	}
	if _, stderr, err := run("lambda", "update-function-configuration", "--function-name", "cli-fn", "--timeout", "4"); err != nil {
		t.Fatalf("update-function-configuration: %v\n%s", err, stderr)
	}
	if _, stderr, err := run("lambda", "wait", "function-updated-v2", "--function-name", "cli-fn"); err != nil {
		t.Fatalf("wait function-updated-v2: %v\n%s", err, stderr)
	}

	outFile := filepath.Join(dir, "out.json")
	// AWS CLI v1 sends --payload as given; v2 wants to be told to.
	args := []string{"lambda", "invoke", "--function-name", "cli-fn", "--payload", `{"hello":"cli"}`, "--log-type", "Tail"}
	if v2 {
		args = append(args, "--cli-binary-format", "raw-in-base64-out")
	}
	out, stderr, err = run(append(args, outFile)...)
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, stderr)
	}
	if got, _ := os.ReadFile(outFile); string(got) != `{"hello":"cli"}` {
		t.Fatalf("invoke wrote %q", got)
	}
	var inv map[string]any
	if err := json.Unmarshal([]byte(out), &inv); err != nil || inv["StatusCode"] != float64(200) || inv["ExecutedVersion"] != "$LATEST" || inv["LogResult"] == "" {
		t.Fatalf("invoke printed %s", out)
	}

	out, _, err = run("lambda", "list-functions")
	if err != nil || !strings.Contains(out, `"cli-fn"`) {
		t.Fatalf("list-functions: %v %s", err, out)
	}

	// Versions, aliases, concurrency and account settings, as the CLI
	// sends them (their paths carry three different API dates).
	steps := []struct {
		args []string
		key  string
		want any
	}{
		{[]string{"lambda", "publish-version", "--function-name", "cli-fn", "--description", "first"}, "Version", "1"},
		{[]string{"lambda", "create-alias", "--function-name", "cli-fn", "--name", "live", "--function-version", "1"}, "AliasArn", "arn:aws:lambda:us-east-1:000000000000:function:cli-fn:live"},
		{[]string{"lambda", "list-versions-by-function", "--function-name", "cli-fn"}, "Versions", nil},
		{[]string{"lambda", "put-function-concurrency", "--function-name", "cli-fn", "--reserved-concurrent-executions", "7"}, "ReservedConcurrentExecutions", float64(7)},
		{[]string{"lambda", "get-function-concurrency", "--function-name", "cli-fn"}, "ReservedConcurrentExecutions", float64(7)},
		{[]string{"lambda", "get-account-settings"}, "AccountLimit", nil},
		{[]string{"lambda", "get-function-configuration", "--function-name", "cli-fn", "--qualifier", "live"}, "Version", "1"},
	}
	for _, st := range steps {
		out, stderr, err := run(st.args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", st.args[1], err, stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc[st.key] == nil || (st.want != nil && doc[st.key] != st.want) {
			t.Fatalf("%s printed %s, want %s = %v", st.args[1], out, st.key, st.want)
		}
	}
	if _, stderr, err := run("lambda", "delete-function-concurrency", "--function-name", "cli-fn"); err != nil {
		t.Fatalf("delete-function-concurrency: %v\n%s", err, stderr)
	}
	args = []string{"lambda", "invoke", "--function-name", "cli-fn", "--qualifier", "live", "--payload", `{}`}
	if v2 {
		args = append(args, "--cli-binary-format", "raw-in-base64-out")
	}
	out, stderr, err = run(append(args, outFile)...)
	if err != nil || !strings.Contains(out, `"ExecutedVersion": "1"`) {
		t.Fatalf("invoke the alias: %v %s\n%s", err, out, stderr)
	}

	if _, stderr, err = run("lambda", "delete-function", "--function-name", "cli-fn"); err != nil {
		t.Fatalf("delete-function: %v\n%s", err, stderr)
	}
	_, stderr, err = run("lambda", "get-function", "--function-name", "cli-fn")
	want := "An error occurred (ResourceNotFoundException) when calling the GetFunction operation: Function not found: arn:aws:lambda:us-east-1:000000000000:function:cli-fn"
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("get-function after delete: err %v, stderr %q, want %q", err, stderr, want)
	}
	_, stderr, _ = run("lambda", "create-function", "--function-name", "cli-fn", "--runtime", "provided.al2023",
		"--role", testRole, "--handler", "bootstrap", "--zip-file", "fileb://"+zipPath, "--memory-size", "99999")
	if !strings.Contains(stderr, "An error occurred (ValidationException) when calling the CreateFunction operation: 1 validation error detected: Value '99999' at 'memorySize'") {
		t.Fatalf("create-function with bad memory: stderr %q", stderr)
	}
}
