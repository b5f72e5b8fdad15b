package metadata

import "github.com/flintdev/flint/internal/lambdafn"

// Resource policies are shared vocabulary (package lambdafn).

// Policy is the resource-based policy of a function, a published version
// or an alias.
type Policy = lambdafn.Policy

// Statement is one AddPermission grant, as given.
type Statement = lambdafn.Statement

// AccountPrincipal matches a principal that names an account.
var AccountPrincipal = lambdafn.AccountPrincipal
