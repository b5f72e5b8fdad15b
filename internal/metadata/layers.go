package metadata

import "github.com/flintdev/flint/internal/lambdafn"

// Layer references are shared vocabulary (package lambdafn).

// MaxLayers is how many layers a function may reference, as in Lambda.
const MaxLayers = lambdafn.MaxLayers

// LayerRef is one layer version a function references.
type LayerRef = lambdafn.LayerRef

// LayersKey identifies the ordered list of layer packages (lambdafn.LayersKey).
func LayersKey(layers []LayerRef) string { return lambdafn.LayersKey(layers) }

// SameLayers reports whether two functions reference the same layer
// versions in the same order.
func SameLayers(a, b []LayerRef) bool { return lambdafn.SameLayers(a, b) }
