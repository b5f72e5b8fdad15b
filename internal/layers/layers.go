// Package layers keeps Lambda layer versions: their configuration and
// resource policies in a JetStream key/value bucket, scoped by account as
// function metadata is. The layer's zip lives in the code store like
// function code (content-addressed by SHA-256); a Version records its
// digest.
//
// Key layout (bucket DefaultBucket; every key starts with the account):
//
//	<account>.<name>.last       the highest version number ever published
//	<account>.<name>.v<N>       layer version N (a Version as JSON)
//	<account>.<name>.policy.<N> version N's resource policy (a Policy)
//
// Version numbers start at 1 and are never reused, also after every
// version of a layer was deleted, as in Lambda.
package layers

import (
	"strconv"
	"time"
)

// DefaultBucket is the KV bucket of layer versions.
const DefaultBucket = "flint-layers"

// Version is one published layer version.
type Version struct {
	Partition string `json:"partition"` // "aws"
	Region    string `json:"region"`
	Account   string `json:"account"`
	Name      string `json:"name"`
	Number    int64  `json:"version"`

	Description             string    `json:"description,omitempty"`
	LicenseInfo             string    `json:"licenseInfo,omitempty"`
	CompatibleRuntimes      []string  `json:"compatibleRuntimes,omitempty"`
	CompatibleArchitectures []string  `json:"compatibleArchitectures,omitempty"`
	CreatedDate             time.Time `json:"createdDate"`

	// CodeSha256 is the base64 SHA-256 of the zip (Lambda's CodeSha256);
	// CodeDigest the same in lowercase hex, the key in the code store.
	CodeSha256   string `json:"codeSha256"`
	CodeDigest   string `json:"codeDigest"`
	CodeSize     int64  `json:"codeSize"`
	UnzippedSize int64  `json:"unzippedSize"`
}

// LayerARN is the ARN of the layer (without version).
func (v *Version) LayerARN() ARN {
	p := v.Partition
	if p == "" {
		p = "aws"
	}
	return ARN{Partition: p, Region: v.Region, Account: v.Account, Name: v.Name}
}

// ARN is the layer version ARN.
func (v *Version) ARN() ARN {
	a := v.LayerARN()
	a.Version = v.Number
	return a
}

// Compatible reports whether the version passes ListLayers' and
// ListLayerVersions' filters: runtime and architecture ("" matches
// anything) must be among the declared ones.
func (v *Version) Compatible(runtime, arch string) bool {
	return (runtime == "" || contains(v.CompatibleRuntimes, runtime)) &&
		(arch == "" || contains(v.CompatibleArchitectures, arch))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func versionKey(account, name string, n int64) string {
	return account + "." + name + ".v" + strconv.FormatInt(n, 10)
}

func lastKey(account, name string) string { return account + "." + name + ".last" }

func policyKey(account, name string, n int64) string {
	return account + "." + name + ".policy." + strconv.FormatInt(n, 10)
}
