package frontend

import (
	"regexp"
	"strconv"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// capacityProviderConfig is Lambda's CapacityProviderConfig (Lambda
// Managed Instances). Flint takes the capacity provider ARN as given (its
// own hosts are the capacity) and honours
// PerExecutionEnvironmentMaxConcurrency: one sandbox serves up to that many
// invocations at once (docs/multi-concurrency.md).
type capacityProviderConfig struct {
	LambdaManagedInstancesCapacityProviderConfig *managedInstancesConfig `json:"LambdaManagedInstancesCapacityProviderConfig"`
}

type managedInstancesConfig struct {
	CapacityProviderArn                   string   `json:"CapacityProviderArn"`
	ExecutionEnvironmentMemoryGiBPerVCpu  *float64 `json:"ExecutionEnvironmentMemoryGiBPerVCpu,omitempty"`
	PerExecutionEnvironmentMaxConcurrency *int     `json:"PerExecutionEnvironmentMaxConcurrency,omitempty"`
}

// capacityProviderArn is the model's pattern for CapacityProviderArn.
var capacityProviderArn = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:capacity-provider:[a-zA-Z0-9-_]+$`)

// applyCapacityProvider validates in as Lambda's model does and sets it on
// g (the function being configured).
func applyCapacityProvider(g *metadata.Function, in *capacityProviderConfig) error {
	const path = "capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig"
	mi := in.LambdaManagedInstancesCapacityProviderConfig
	if mi == nil {
		return validation(path, "null", false, "Member must not be null")
	}
	arn := mi.CapacityProviderArn
	switch {
	case arn == "":
		return validation(path+".capacityProviderArn", "null", false, "Member must not be null")
	case len(arn) > 140:
		return validation(path+".capacityProviderArn", arn, false, "Member must have length less than or equal to 140")
	case !capacityProviderArn.MatchString(arn):
		return validation(path+".capacityProviderArn", arn, false,
			"Member must satisfy regular expression pattern: "+capacityProviderArn.String())
	}
	cp := &metadata.CapacityProvider{Arn: arn}
	if v := mi.ExecutionEnvironmentMemoryGiBPerVCpu; v != nil {
		if *v < 2 || *v > 8 {
			s := strconv.FormatFloat(*v, 'f', -1, 64)
			if *v < 2 {
				return validation(path+".executionEnvironmentMemoryGiBPerVCpu", s, false, "Member must have value greater than or equal to 2.0")
			}
			return validation(path+".executionEnvironmentMemoryGiBPerVCpu", s, false, "Member must have value less than or equal to 8.0")
		}
		cp.MemoryGiBPerVCPU = *v
	}
	if v := mi.PerExecutionEnvironmentMaxConcurrency; v != nil {
		if err := rangeCheck(path+".perExecutionEnvironmentMaxConcurrency", *v, 1, 1600); err != nil {
			return err
		}
		cp.PerEnvMaxConcurrency = *v
	}
	g.CapacityProvider = cp
	return nil
}

// checkMultiConcurrency refuses a multi-concurrent configuration on a
// runtime that cannot serve it (checked on the final configuration, so a
// runtime change is caught too). Only the provided runtimes can: they run
// the function's own bootstrap (aws-lambda-go ≥ 1.50 honours
// AWS_LAMBDA_MAX_CONCURRENCY). Flint's Python and Node runtime clients take
// one event at a time, as Lambda's Python < 3.13 and Node < 22 runtimes,
// which Lambda Managed Instances do not support either.
func checkMultiConcurrency(g *metadata.Function) error {
	if g.MaxConcurrency() > 1 && !isProvidedRuntime(g.Runtime) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"PerExecutionEnvironmentMaxConcurrency %d is not supported for runtime %s: Flint's %s runtime client handles one event at a time. Use a provided runtime (provided.al2023) with a runtime client that honours AWS_LAMBDA_MAX_CONCURRENCY, such as aws-lambda-go 1.50 or later, or set it to 1.",
			g.MaxConcurrency(), g.Runtime, g.Runtime)
	}
	return nil
}

// capacityProviderOut is the configuration as GetFunctionConfiguration
// returns it (nil for none).
func capacityProviderOut(f *metadata.Function) *capacityProviderConfig {
	cp := f.CapacityProvider
	if cp == nil {
		return nil
	}
	mi := &managedInstancesConfig{CapacityProviderArn: cp.Arn}
	if cp.MemoryGiBPerVCPU != 0 {
		v := cp.MemoryGiBPerVCPU
		mi.ExecutionEnvironmentMemoryGiBPerVCpu = &v
	}
	if cp.PerEnvMaxConcurrency != 0 {
		v := cp.PerEnvMaxConcurrency
		mi.PerExecutionEnvironmentMaxConcurrency = &v
	}
	return &capacityProviderConfig{LambdaManagedInstancesCapacityProviderConfig: mi}
}
