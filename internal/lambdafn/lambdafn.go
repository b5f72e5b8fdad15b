// Package lambdafn is the vocabulary every Flint component shares about a
// Lambda function: one version's configuration (Function), its layers and
// resource policy, its ARNs and the key that says which sandboxes may
// serve it. It imports no store and no transport, so the worker, the
// worker manager and the host proxy use it without pulling in JetStream;
// package metadata stores it.
package lambdafn

import (
	"maps"
	"slices"
	"time"
)

// LatestVersion is the name of the unpublished, mutable version.
const LatestVersion = "$LATEST"

// Function is one function version's configuration as Flint stores it.
// Field names follow Lambda's FunctionConfiguration where one exists.
type Function struct {
	Account      string            `json:"account"` // 12-digit account id
	Region       string            `json:"region"`
	Name         string            `json:"name"`
	Version      string            `json:"version"` // LatestVersion or "1", "2", ...
	Runtime      string            `json:"runtime"`
	Handler      string            `json:"handler"`
	Role         string            `json:"role"`
	Description  string            `json:"description"`
	MemorySize   int               `json:"memorySize"`       // MB, 128..10240
	Timeout      int               `json:"timeout"`          // seconds, 1..900
	EphemeralMB  int               `json:"ephemeralStorage"` // MB, 512..10240
	Environment  map[string]string `json:"environment,omitempty"`
	Architecture string            `json:"architecture"` // "x86_64"
	// DeadLetterTargetArn is DeadLetterConfig.TargetArn: where failed
	// asynchronous events go (a Flint queue "arn:aws:sqs:..." or a
	// function ARN), "" for none.
	DeadLetterTargetArn string `json:"deadLetterTargetArn,omitempty"`
	// CapacityProvider is CapacityProviderConfig's
	// LambdaManagedInstancesCapacityProviderConfig, nil for none. Flint
	// runs every function on its own hosts; what it takes from the
	// setting is PerExecutionEnvironmentMaxConcurrency (see
	// MaxConcurrency).
	CapacityProvider *CapacityProvider `json:"capacityProvider,omitempty"`

	// CodeSha256 is the base64 (standard encoding) SHA-256 of the zip, as
	// Lambda reports it. CodeDigest is the same digest in lowercase hex, the
	// key of the package in the code store.
	CodeSha256 string `json:"codeSha256"`
	CodeDigest string `json:"codeDigest"`
	CodeSize   int64  `json:"codeSize"`
	// CodeUnzippedSize is the sum of the sizes of the package's files (0
	// for functions stored before Flint recorded it).
	CodeUnzippedSize int64 `json:"codeUnzippedSize,omitempty"`
	// Layers are the layer versions the function references, in order
	// (later layers win where files collide in /opt).
	Layers []LayerRef `json:"layers,omitempty"`

	// RevisionId changes on every change of code or configuration.
	RevisionID   string    `json:"revisionId"`
	LastModified time.Time `json:"lastModified"`

	State            string `json:"state"` // "Active", "Pending", "Failed", "Inactive"
	StateReason      string `json:"stateReason,omitempty"`
	LastUpdateStatus string `json:"lastUpdateStatus"` // "Successful", "InProgress", "Failed"
	// LastUpdateStatusReason explains an InProgress or Failed update.
	LastUpdateStatusReason string `json:"lastUpdateStatusReason,omitempty"`

	// LastPublished is, on $LATEST only, the number of the newest version
	// ever published (0 for none). Version numbers are never reused, even
	// after a version is deleted. The metadata store's PublishVersion maintains it.
	LastPublished int `json:"lastPublished,omitempty"`

	// Policy is the resource-based policy of this version ($LATEST's is
	// the unqualified function's); nil for none.
	Policy *Policy `json:"policy,omitempty"`

	// KVRevision is the revision of the store entry this value was read
	// from (0 for a value never stored). It is not stored itself: the
	// metadata store's Get and List fill it in, and its Update uses it as
	// the expected revision.
	KVRevision uint64 `json:"-"`
}

// CapacityProvider is Lambda Managed Instances' capacity provider
// configuration of a function, as given.
type CapacityProvider struct {
	Arn string `json:"arn"`
	// MemoryGiBPerVCPU is ExecutionEnvironmentMemoryGiBPerVCpu (0: not
	// given); stored and returned, not used by Flint.
	MemoryGiBPerVCPU float64 `json:"memoryGiBPerVCpu,omitempty"`
	// PerEnvMaxConcurrency is PerExecutionEnvironmentMaxConcurrency
	// (1..1600, 0: not given).
	PerEnvMaxConcurrency int `json:"perExecutionEnvironmentMaxConcurrency,omitempty"`
}

// MaxConcurrency is how many invocations one sandbox of f serves at once:
// PerExecutionEnvironmentMaxConcurrency when set, else 1 (Lambda's
// default, one event at a time).
func (f *Function) MaxConcurrency() int {
	if f.CapacityProvider != nil && f.CapacityProvider.PerEnvMaxConcurrency > 1 {
		return f.CapacityProvider.PerEnvMaxConcurrency
	}
	return 1
}

// ARN is the function's unqualified ARN.
func (f *Function) ARN() string {
	return "arn:aws:lambda:" + f.Region + ":" + f.Account + ":function:" + f.Name
}

// QualifiedARN is the ARN with the version qualifier.
func (f *Function) QualifiedARN() string { return f.ARN() + ":" + f.Version }

// SandboxKey identifies what a sandbox was built from: sandboxes are shared
// only by invocations with the same key, so any change of code or
// configuration (a new RevisionID) or of the layers retires the old
// sandboxes.
func (f *Function) SandboxKey() string {
	k := f.Account + "/" + f.Name + "/" + f.Version + "/" + f.RevisionID
	if lk := LayersKey(f.Layers); lk != "" {
		k += "/" + lk
	}
	return k
}

// Clone returns a copy of f that shares nothing mutable with it (the
// policy, which readers never change, is shared).
func (f *Function) Clone() *Function {
	c := *f
	if f.Environment != nil {
		c.Environment = maps.Clone(f.Environment)
	}
	c.Layers = slices.Clone(f.Layers)
	if f.CapacityProvider != nil {
		cp := *f.CapacityProvider
		c.CapacityProvider = &cp
	}
	return &c
}

// IsAccountID reports whether s is an AWS account ID: exactly 12 digits.
func IsAccountID(s string) bool { return len(s) == 12 && IsDigits(s) }

// IsDigits reports whether s is a non-empty string of ASCII digits.
func IsDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
