package metadata

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
