package metadata

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// MaxLayers is how many layers a function may reference, as in Lambda.
const MaxLayers = 5

// LayerRef is one layer version a function references. It carries what
// the worker needs to build the function's /opt (the package digest), so
// a function keeps working after the layer version is deleted, as in
// Lambda.
type LayerRef struct {
	// Arn is the layer version ARN
	// (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION).
	Arn string `json:"arn"`
	// CodeSize is the layer's zip size in bytes (Lambda's Layers[].CodeSize).
	CodeSize int64 `json:"codeSize"`
	// CodeDigest is the lowercase hex SHA-256 of the zip: its key in the
	// code store.
	CodeDigest string `json:"codeDigest"`
	// UnzippedSize is the sum of the sizes of the layer's files.
	UnzippedSize int64 `json:"unzippedSize"`
}

// LayersKey identifies the ordered list of layer packages: "" without
// layers, else the hex SHA-256 of the digests in order. Two functions with
// the same LayersKey see the same /opt.
func LayersKey(layers []LayerRef) string {
	if len(layers) == 0 {
		return ""
	}
	h := sha256.New()
	for _, l := range layers {
		h.Write([]byte(l.CodeDigest))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SameLayers reports whether two functions reference the same layer
// versions in the same order.
func SameLayers(a, b []LayerRef) bool { return slices.Equal(a, b) }
