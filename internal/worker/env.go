package worker

import (
	"sort"
	"strconv"
	"time"

	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/runtimes"
)

// reservedEnv are the variables Lambda sets and a function's configuration
// cannot override.
var reservedEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_REGION": true, "AWS_DEFAULT_REGION": true,
	"AWS_EXECUTION_ENV": true, "AWS_LAMBDA_FUNCTION_NAME": true, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_FUNCTION_VERSION": true, "AWS_LAMBDA_INITIALIZATION_TYPE": true,
	"AWS_LAMBDA_LOG_GROUP_NAME": true, "AWS_LAMBDA_LOG_STREAM_NAME": true, "AWS_ACCESS_KEY": true,
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_LAMBDA_RUNTIME_API": true, "AWS_LAMBDA_MAX_CONCURRENCY": true, "LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true, "TZ": true,
}

// lambdaEnv is the runtime's complete environment: Lambda's defaults,
// then the function's variables (which may replace unreserved defaults such
// as PATH), then the reserved variables. The driver adds
// AWS_LAMBDA_RUNTIME_API.
func lambdaEnv(fn *lambdafn.Function, rt runtimes.Runtime, sandboxID string, now time.Time) []string {
	region := fn.Region
	if region == "" {
		region = "us-east-1"
	}
	version := fn.Version
	if version == "" {
		version = lambdafn.LatestVersion
	}
	env := map[string]string{
		"LANG":            "en_US.UTF-8",
		"PATH":            "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		"LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
	}
	for _, kv := range rt.Env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				env[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	for k, v := range fn.Environment {
		if !reservedEnv[k] {
			env[k] = v
		}
	}
	reserved := map[string]string{
		"_HANDLER":                        fn.Handler,
		"AWS_REGION":                      region,
		"AWS_DEFAULT_REGION":              region,
		"AWS_EXECUTION_ENV":               "AWS_Lambda_" + fn.Runtime,
		"AWS_LAMBDA_FUNCTION_NAME":        fn.Name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(fn.MemorySize),
		"AWS_LAMBDA_FUNCTION_VERSION":     version,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      logStreamName(now, version, sandboxID),
		"LAMBDA_TASK_ROOT":                "/var/task",
		"LAMBDA_RUNTIME_DIR":              "/var/runtime",
		"TZ":                              ":UTC",
	}
	if n := fn.MaxConcurrency(); n > 1 {
		// Lambda Managed Instances: the runtime serves n events at once
		// (aws-lambda-go runs n /next pollers).
		reserved["AWS_LAMBDA_MAX_CONCURRENCY"] = strconv.Itoa(n)
	}
	for k, v := range reserved {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// logStreamName is Lambda's "2006/01/02/[$LATEST]<id>".
func logStreamName(now time.Time, version, sandboxID string) string {
	return now.UTC().Format("2006/01/02") + "/[" + version + "]" + sandboxID
}
