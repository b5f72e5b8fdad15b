package frontend

import (
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/metadata"
)

// configInput holds the configuration members CreateFunction and
// UpdateFunctionConfiguration share. A nil member is "not given".
type configInput struct {
	Role             *string           `json:"Role"`
	Handler          *string           `json:"Handler"`
	Description      *string           `json:"Description"`
	Timeout          *int              `json:"Timeout"`
	MemorySize       *int              `json:"MemorySize"`
	Environment      *environment      `json:"Environment"`
	Runtime          *string           `json:"Runtime"`
	EphemeralStorage *ephemeralStorage `json:"EphemeralStorage"`
	TracingConfig    *tracingConfig    `json:"TracingConfig"`
	LoggingConfig    *loggingConfig    `json:"LoggingConfig"`
	// CapacityProviderConfig (Lambda Managed Instances) sets how many
	// invocations one sandbox serves at once (capacity.go).
	CapacityProviderConfig *capacityProviderConfig `json:"CapacityProviderConfig"`

	// Layers are layer version ARNs (functionlayers.go): nil when not
	// given, empty to remove every layer.
	Layers []string `json:"Layers"`

	// Features Flint does not have; given non-empty they are refused
	// rather than silently ignored.
	VpcConfig         *vpcConfig      `json:"VpcConfig"`
	DeadLetterConfig  *deadLetter     `json:"DeadLetterConfig"`
	KMSKeyArn         *string         `json:"KMSKeyArn"`
	FileSystemConfigs json.RawMessage `json:"FileSystemConfigs"`
	ImageConfig       json.RawMessage `json:"ImageConfig"`
	SnapStart         *snapStart      `json:"SnapStart"`
}

type vpcConfig struct {
	SubnetIds        []string `json:"SubnetIds"`
	SecurityGroupIds []string `json:"SecurityGroupIds"`
}

type deadLetter struct {
	TargetArn string `json:"TargetArn"`
}

type snapStart struct {
	ApplyOn string `json:"ApplyOn"`
}

func unsupported(what string) error {
	return lambdaerr.New(lambdaerr.InvalidParameterValue, "%s is not supported by Flint.", what)
}

func emptyJSON(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null" || s == "[]" || s == "{}"
}

// checkUnsupported refuses features Flint does not implement.
func (in *configInput) checkUnsupported() error {
	switch {
	case in.VpcConfig != nil && (len(in.VpcConfig.SubnetIds) > 0 || len(in.VpcConfig.SecurityGroupIds) > 0):
		return unsupported("VpcConfig")
	case in.KMSKeyArn != nil && *in.KMSKeyArn != "":
		return unsupported("KMSKeyArn")
	case !emptyJSON(in.FileSystemConfigs):
		return unsupported("FileSystemConfigs")
	case !emptyJSON(in.ImageConfig):
		return unsupported("ImageConfig")
	case in.SnapStart != nil && in.SnapStart.ApplyOn != "" && in.SnapStart.ApplyOn != "None":
		return unsupported("SnapStart")
	case in.TracingConfig != nil && in.TracingConfig.Mode != "" && in.TracingConfig.Mode != "PassThrough":
		return unsupported("TracingConfig Mode " + in.TracingConfig.Mode)
	case in.LoggingConfig != nil && in.LoggingConfig.LogFormat != "" && in.LoggingConfig.LogFormat != "Text":
		return unsupported("LoggingConfig LogFormat " + in.LoggingConfig.LogFormat)
	}
	return nil
}

var (
	rolePattern        = regexp.MustCompile(`^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$`)
	envKeyPattern      = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9_])+$`)
	handlerPattern     = regexp.MustCompile(`^[^\s]+$`)
	reservedEnvKeys    = []string{"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT"}
	maxEnvironmentSize = 4096
)

func rangeCheck(path string, v, lo, hi int) error {
	if v < lo {
		return validation(path, strconv.Itoa(v), false, "Member must have value greater than or equal to "+strconv.Itoa(lo))
	}
	if v > hi {
		return validation(path, strconv.Itoa(v), false, "Member must have value less than or equal to "+strconv.Itoa(hi))
	}
	return nil
}

// applyConfig validates the given members as Lambda does and copies them
// into f. Nothing in f changes when an error is returned.
func (h *Handler) applyConfig(f *metadata.Function, in *configInput) error {
	if err := in.checkUnsupported(); err != nil {
		return err
	}
	g := *f // validate into a copy, commit at the end
	if in.Role != nil {
		if !rolePattern.MatchString(*in.Role) {
			return validation("role", *in.Role, false, "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+")
		}
		g.Role = *in.Role
	}
	if in.Handler != nil {
		if len(*in.Handler) > 128 {
			return validation("handler", *in.Handler, false, "Member must have length less than or equal to 128")
		}
		if *in.Handler != "" && !handlerPattern.MatchString(*in.Handler) {
			return validation("handler", *in.Handler, false, "Member must satisfy regular expression pattern: [^\\s]+")
		}
		g.Handler = *in.Handler
	}
	if in.Description != nil {
		if len(*in.Description) > 256 {
			return validation("description", *in.Description, false, "Member must have length less than or equal to 256")
		}
		g.Description = *in.Description
	}
	if in.Timeout != nil {
		if err := rangeCheck("timeout", *in.Timeout, 1, 900); err != nil {
			return err
		}
		g.Timeout = *in.Timeout
	}
	if in.MemorySize != nil {
		if err := rangeCheck("memorySize", *in.MemorySize, 128, 10240); err != nil {
			return err
		}
		g.MemorySize = *in.MemorySize
	}
	if in.EphemeralStorage != nil {
		if err := rangeCheck("ephemeralStorage.size", in.EphemeralStorage.Size, 512, 10240); err != nil {
			return err
		}
		g.EphemeralMB = in.EphemeralStorage.Size
	}
	if in.Runtime != nil {
		if err := h.checkRuntime(*in.Runtime); err != nil {
			return err
		}
		g.Runtime = *in.Runtime
	}
	if in.DeadLetterConfig != nil {
		if t := in.DeadLetterConfig.TargetArn; t != "" && !h.validDeadLetterTarget(t) {
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The provided DeadLetterConfig TargetArn %s is not valid: Flint accepts a queue ARN arn:aws:sqs:%s:%s:<name> or a function ARN arn:aws:lambda:%s:%s:function:<name>.",
				t, h.cfg.Region, f.Account, h.cfg.Region, f.Account)
		}
		g.DeadLetterTargetArn = in.DeadLetterConfig.TargetArn
	}
	if in.Environment != nil {
		if err := checkEnvironment(in.Environment.Variables); err != nil {
			return err
		}
		g.Environment = nil
		if len(in.Environment.Variables) > 0 {
			g.Environment = in.Environment.Variables
		}
	}
	if in.CapacityProviderConfig != nil {
		if err := applyCapacityProvider(&g, in.CapacityProviderConfig); err != nil {
			return err
		}
	}
	if err := checkMultiConcurrency(&g); err != nil {
		return err
	}
	*f = g
	return nil
}

// validDeadLetterTarget accepts the two dead-letter targets asyncq
// delivers to: a Flint queue arn:aws:sqs:<region>:<account>:<name> and a
// function arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
// (ARN length at most 256, as Lambda's model says).
func (h *Handler) validDeadLetterTarget(arn string) bool {
	if len(arn) > 256 {
		return false
	}
	parts := strings.Split(arn, ":")
	if len(parts) < 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[3] == "" || !lambdafn.IsAccountID(parts[4]) {
		return false
	}
	switch {
	case parts[2] == "sqs" && len(parts) == 6:
		return sqsQueueName.MatchString(parts[5])
	case parts[2] == "lambda" && (len(parts) == 7 || len(parts) == 8) && parts[5] == "function":
		return validName(parts[6]) && (len(parts) == 7 || validQualifier(parts[7]))
	}
	return false
}

// sqsQueueName is SQS's queue name rule (1–80 of [a-zA-Z0-9_-], optional
// .fifo suffix).
var sqsQueueName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,80}(\.fifo)?$`)

// checkRuntime accepts only the runtimes this host offers.
func (h *Handler) checkRuntime(rt string) error {
	names := h.cfg.Runtimes.Names()
	if slices.Contains(names, rt) {
		return nil
	}
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	return lambdaerr.New(lambdaerr.InvalidParameterValue,
		"The runtime parameter of %s is not supported on this Flint host. Supported runtimes: %s", rt, strings.Join(sorted, ", "))
}

// checkEnvironment applies Lambda's rules for environment variables: key
// pattern, reserved keys, 4 KB in total (measured, as Lambda does, on the
// JSON of the map).
func checkEnvironment(vars map[string]string) error {
	var reserved []string
	for k := range vars {
		if !envKeyPattern.MatchString(k) {
			return validation("environment.variables", "", true,
				"Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]")
		}
		if slices.Contains(reservedEnvKeys, k) {
			reserved = append(reserved, k)
		}
	}
	if len(reserved) > 0 {
		sort.Strings(reserved)
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s",
			strings.Join(reserved, ", "))
	}
	data, _ := json.Marshal(vars) // a map[string]string always marshals
	if len(data) > maxEnvironmentSize {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %d bytes", len(data))
	}
	return nil
}

// checkArchitectures accepts nothing but x86_64.
func checkArchitectures(archs []string) error {
	if len(archs) > 1 {
		return validation("architectures", "["+strings.Join(archs, ", ")+"]", false, "Member must have length less than or equal to 1")
	}
	if len(archs) == 1 && archs[0] != "x86_64" {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Architecture %s is not supported by Flint; only x86_64 is.", archs[0])
	}
	return nil
}
