package metadata

import "regexp"

// Policy is the resource-based policy of a function, a published version
// or an alias: the statements AddPermission added. It is stored with the
// record it belongs to ($LATEST for the unqualified function), so it goes
// when that goes; a published version starts without one, as in Lambda.
type Policy struct {
	// RevisionID changes on every AddPermission and RemovePermission; a
	// caller passing the one GetPolicy returned edits only the policy it
	// read.
	RevisionID string      `json:"revisionId"`
	Statements []Statement `json:"statements"`
}

// Statement is one AddPermission grant, as given.
type Statement struct {
	Sid                 string `json:"sid"`
	Action              string `json:"action"`    // "lambda:InvokeFunction", "lambda:*", ...
	Principal           string `json:"principal"` // account id, IAM ARN, service principal or "*"
	SourceArn           string `json:"sourceArn,omitempty"`
	SourceAccount       string `json:"sourceAccount,omitempty"`
	EventSourceToken    string `json:"eventSourceToken,omitempty"`
	PrincipalOrgID      string `json:"principalOrgId,omitempty"`
	FunctionURLAuthType string `json:"functionUrlAuthType,omitempty"`
}

// AccountPrincipal matches a principal that names an account: its id
// (group 1) or its root ARN (group 2).
var AccountPrincipal = regexp.MustCompile(`^(\d{12}|arn:aws[a-zA-Z-]*:iam::(\d{12}):root)$`)

// AllowsInvoke reports whether p lets account invoke what p belongs to: a
// statement granting lambda:InvokeFunction (lambda:*, *) to the account or
// to "*", with no condition Flint cannot check (a source ARN,
// organisation, event source token or function URL auth type is never true
// of a Flint key). A nil policy allows nothing.
func (p *Policy) AllowsInvoke(account string) bool {
	if p == nil {
		return false
	}
	for _, s := range p.Statements {
		if s.Action != "lambda:InvokeFunction" && s.Action != "lambda:*" && s.Action != "*" {
			continue
		}
		if s.SourceArn != "" || s.EventSourceToken != "" || s.PrincipalOrgID != "" || s.FunctionURLAuthType != "" {
			continue
		}
		if s.SourceAccount != "" && s.SourceAccount != account {
			continue
		}
		if s.Principal == "*" {
			return true
		}
		if m := AccountPrincipal.FindStringSubmatch(s.Principal); m != nil && (m[1] == account || m[2] == account) {
			return true
		}
	}
	return false
}
