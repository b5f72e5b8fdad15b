package frontend

import (
	"context"
	"strings"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/metadata"
)

// functionNamePattern is the constraint Lambda quotes when a FunctionName
// is malformed.
const functionNamePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`

// createNamePattern is the constraint on CreateFunction's FunctionName,
// which cannot carry a qualifier.
const createNamePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)`

// functionRef is a parsed FunctionName.
type functionRef struct {
	name      string
	qualifier string // "" when the FunctionName carried none
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

func validQualifier(s string) bool {
	if s == metadata.LatestVersion {
		return true
	}
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// parseFunctionName accepts the forms Lambda accepts: "name",
// "name:qualifier", "123456789012:function:name[:qualifier]" and
// "arn:aws:lambda:region:123456789012:function:name[:qualifier]".
//
// A well-formed ARN naming another account is an AccessDeniedException, as
// in Lambda, whether or not that account has such a function: only Invoke
// looks further, for a resource policy that grants the caller's account
// lambda:InvokeFunction (see invokeTarget). An ARN naming another region
// cannot refer to a function on this server, which serves one region: it
// is ResourceNotFoundException (Lambda's message, with the ARN as given).
// Creating a function under another region's ARN is refused with
// InvalidParameterValueException by the create handler.
func (h *Handler) parseFunctionName(ctx context.Context, raw string) (functionRef, error) {
	// Built only when needed: this runs on every invocation.
	bad := func() error {
		return validation("functionName", raw, false, "Member must satisfy regular expression pattern: "+functionNamePattern)
	}
	if raw == "" {
		return functionRef{}, validation("functionName", raw, false, "Member must have length greater than or equal to 1")
	}
	if len(raw) > 170 {
		return functionRef{}, validation("functionName", raw, false, "Member must have length less than or equal to 170")
	}
	var one [1]string
	parts := one[:]
	if strings.Contains(raw, ":") {
		parts = strings.Split(raw, ":")
	} else {
		one[0] = raw // a plain name, the usual case: no allocation
	}
	var account, region, name, qual string
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		name, qual = parts[0], parts[1]
	case 3, 4:
		if parts[1] != "function" || !lambdafn.IsAccountID(parts[0]) {
			return functionRef{}, bad()
		}
		account, name = parts[0], parts[2]
		if len(parts) == 4 {
			qual = parts[3]
		}
	case 7, 8:
		if parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws") || parts[2] != "lambda" ||
			parts[5] != "function" || !lambdafn.IsAccountID(parts[4]) || parts[3] == "" {
			return functionRef{}, bad()
		}
		region, account, name = parts[3], parts[4], parts[6]
		if len(parts) == 8 {
			qual = parts[7]
		}
	default:
		return functionRef{}, bad()
	}
	if len(parts) != 2 && len(parts) != 4 && len(parts) != 8 {
		qual = ""
	} else if !validQualifier(qual) {
		return functionRef{}, bad()
	}
	if name == "" || len(name) > 64 {
		if len(parts) == 1 && len(name) > 64 {
			return functionRef{}, validation("functionName", raw, false, "Member must have length less than or equal to 64")
		}
		return functionRef{}, bad()
	}
	if !validName(name) {
		return functionRef{}, bad()
	}
	caller := h.account(ctx)
	if (account != "" && account != caller) || (region != "" && region != h.cfg.Region) {
		if region == "" {
			region = h.cfg.Region
		}
		arn := "arn:aws:lambda:" + region + ":" + account + ":function:" + name
		if qual != "" {
			arn += ":" + qual
		}
		f := &foreignARN{arn: arn}
		if region == h.cfg.Region {
			f.owner, f.name, f.qualifier, f.caller = account, name, qual, caller
		}
		return functionRef{}, f
	}
	return functionRef{name: name, qualifier: qual}, nil
}

// foreignARN is a FunctionName naming another account or region. For
// another region it unwraps to the ResourceNotFoundException that
// operations on existing functions answer with; for another account of
// this region (owner set) to AccessDeniedException, which ServeHTTP words
// with the operation's IAM action.
type foreignARN struct {
	arn string
	// owner, name and qualifier are the function the ARN names in this
	// region, caller the account that named it; owner is "" for another
	// region.
	owner, name, qualifier, caller string
}

func (e *foreignARN) Error() string {
	return "function " + e.arn + " is not in the caller's account and this server's region"
}

func (e *foreignARN) Unwrap() error {
	if e.owner != "" {
		return lambdaerr.New(lambdaerr.AccessDenied, "%s", e.denied(""))
	}
	return lambdaerr.New(lambdaerr.ResourceNotFound, "Function not found: %s", e.arn)
}

// denied is Lambda's AccessDeniedException message for action ("" when
// not known).
func (e *foreignARN) denied(action string) string {
	if action == "" {
		return "User: arn:aws:iam::" + e.caller + ":root is not authorized to perform this operation on resource: " + e.arn +
			" because no resource-based policy allows it"
	}
	return "User: arn:aws:iam::" + e.caller + ":root is not authorized to perform: " + action + " on resource: " + e.arn +
		" because no resource-based policy allows the " + action + " action"
}

// resolveQualifier merges the qualifier carried by a FunctionName with the
// Qualifier query parameter ("" for neither: $LATEST). It checks the
// syntax only; resolve finds what the qualifier names.
func (h *Handler) resolveQualifier(ref functionRef, query string) (string, error) {
	q := ref.qualifier
	if query != "" {
		if !validQualifier(query) {
			return "", validation("qualifier", query, false, "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
		}
		if q != "" && q != query {
			return "", lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The derived qualifier from the function name does not match the specified qualifier.")
		}
		q = query
	}
	if q == "" {
		q = metadata.LatestVersion
	}
	return q, nil
}

// resolve finds the function version a qualifier names: $LATEST, a
// published version, or an alias (then alias is set and fn is the alias's
// primary FunctionVersion). Anything missing is ResourceNotFoundException
// with Lambda's message.
func (h *Handler) resolve(ctx context.Context, name, q string) (fn *metadata.Function, alias *metadata.Alias, err error) {
	return h.cfg.Functions.Resolve(ctx, h.account(ctx), name, q)
}

// arn is the ARN of a function of this server, qualified when q is not "".
func (h *Handler) arn(ctx context.Context, name, q string) string {
	a := "arn:aws:lambda:" + h.cfg.Region + ":" + h.account(ctx) + ":function:" + name
	if q != "" {
		a += ":" + q
	}
	return a
}

// account is the account a request acts on: its caller's (see
// internal/auth), or Config.Account for a request that carries no caller.
func (h *Handler) account(ctx context.Context) string {
	return auth.AccountOf(ctx, h.cfg.Account)
}
