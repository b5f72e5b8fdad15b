package metadata

import "github.com/flintdev/flint/internal/lambdafn"

// LatestVersion is the name of the unpublished, mutable version.
const LatestVersion = lambdafn.LatestVersion

// Function is one function version's configuration as Flint stores it (the
// shared vocabulary type; see package lambdafn).
type Function = lambdafn.Function

// CapacityProvider is a function's Lambda Managed Instances configuration.
type CapacityProvider = lambdafn.CapacityProvider
