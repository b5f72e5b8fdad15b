package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Resource-based policies: AddPermission, GetPolicy, RemovePermission.
//
//	POST   /2015-03-31/functions/{name}/policy[?Qualifier=Q]         AddPermission → 201 {"Statement": "<json>"}
//	GET    /2015-03-31/functions/{name}/policy[?Qualifier=Q]         GetPolicy → 200 {"Policy": "<json>", "RevisionId"}
//	DELETE /2015-03-31/functions/{name}/policy/{sid}[?Qualifier=Q][&RevisionId=R]  RemovePermission → 204
//
// A policy belongs to the unqualified function ($LATEST's record), a
// published version or an alias, as the Qualifier says. Its RevisionId is
// its own (it changes on each edit; the function's RevisionId, which
// names a code and configuration state, does not), so editing a policy
// never retires warm sandboxes.
//
// Flint evaluates one kind of grant: lambda:InvokeFunction (or lambda:*,
// or *) to another account — its id, its root ARN
// arn:aws:iam::ID:root — or to "*", lets that account's keys invoke the
// function by ARN. Statements naming services, IAM users or roles are kept
// and shown, and grant nothing: Flint keys have no users or roles.

// addPermissionRequest is AddPermission's body.
type addPermissionRequest struct {
	StatementId         *string `json:"StatementId"`
	Action              *string `json:"Action"`
	Principal           *string `json:"Principal"`
	SourceArn           string  `json:"SourceArn"`
	SourceAccount       string  `json:"SourceAccount"`
	EventSourceToken    string  `json:"EventSourceToken"`
	PrincipalOrgID      string  `json:"PrincipalOrgID"`
	FunctionUrlAuthType string  `json:"FunctionUrlAuthType"`
	RevisionId          string  `json:"RevisionId"`
}

var (
	statementIDPattern = regexp.MustCompile(`^[a-zA-Z0-9-_.]{1,100}$`)
	actionPattern      = regexp.MustCompile(`^(lambda:[*]|lambda:[a-zA-Z]+|[*])$`)
	principalPattern   = regexp.MustCompile(`^[^\s]+$`)
	accountPrincipal   = metadata.AccountPrincipal
)

// policyTarget is the record a policy operation edits: $LATEST or a
// version (fn), or an alias.
type policyTarget struct {
	name, qualifier string // qualifier "" for the unqualified function
}

func (h *Handler) policyTarget(r *http.Request, rt route) (policyTarget, error) {
	ref, err := h.parseFunctionName(r.Context(), rt.function)
	if err != nil {
		return policyTarget{}, err
	}
	q := ref.qualifier
	if query := r.URL.Query().Get("Qualifier"); query != "" {
		if !validQualifier(query) {
			return policyTarget{}, validation("qualifier", query, false, "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
		}
		if q != "" && q != query {
			return policyTarget{}, lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The derived qualifier from the function name does not match the specified qualifier.")
		}
		q = query
	}
	if q == metadata.LatestVersion {
		q = ""
	}
	return policyTarget{name: ref.name, qualifier: q}, nil
}

// modifyPolicy applies edit to the policy of t in the caller's account and
// stores it with a new RevisionId. edit gets the current policy (never
// nil) and returns an error to write nothing.
func (h *Handler) modifyPolicy(ctx context.Context, t policyTarget, edit func(p *metadata.Policy) error) (*metadata.Policy, error) {
	account := h.account(ctx)
	apply := func(cur **metadata.Policy) error {
		p := &metadata.Policy{}
		if *cur != nil {
			c := **cur
			c.Statements = slices.Clone(c.Statements)
			p = &c
		}
		if err := edit(p); err != nil {
			return err
		}
		id, err := h.cfg.NewID()
		if err != nil {
			return err
		}
		p.RevisionID = id
		if len(p.Statements) == 0 {
			p = nil
		}
		*cur = p
		return nil
	}
	var out *metadata.Policy
	var err error
	if t.qualifier != "" && !metadata.IsVersionNumber(t.qualifier) {
		_, err = h.cfg.Functions.ModifyAlias(ctx, account, t.name, t.qualifier, func(a *metadata.Alias) error {
			err := apply(&a.Policy)
			out = a.Policy
			return err
		})
	} else {
		v := t.qualifier
		if v == "" {
			v = metadata.LatestVersion
		}
		_, err = h.cfg.Functions.Modify(ctx, account, t.name, v, func(f *metadata.Function) error {
			err := apply(&f.Policy)
			out = f.Policy
			return err
		})
	}
	return out, err
}

// currentPolicy reads the policy of t in the caller's account (nil for
// none).
func (h *Handler) currentPolicy(ctx context.Context, t policyTarget) (*metadata.Policy, string, error) {
	account := h.account(ctx)
	if t.qualifier != "" && !metadata.IsVersionNumber(t.qualifier) {
		a, err := h.cfg.Functions.GetAlias(ctx, account, t.name, t.qualifier)
		if err != nil {
			return nil, "", err
		}
		return a.Policy, a.ARN(), nil
	}
	v := t.qualifier
	if v == "" {
		v = metadata.LatestVersion
	}
	f, err := h.cfg.Functions.Get(ctx, account, t.name, v)
	if err != nil {
		return nil, "", err
	}
	arn := f.ARN()
	if t.qualifier != "" {
		arn = f.QualifiedARN()
	}
	return f.Policy, arn, nil
}

func preconditionFailed() error {
	return lambdaerr.New(lambdaerr.PreconditionFailed,
		"The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id")
}

func (h *Handler) addPermission(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	t, err := h.policyTarget(r, rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "AddPermission")
	if err != nil {
		return err
	}
	var req addPermissionRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	switch {
	case req.StatementId == nil || !statementIDPattern.MatchString(*req.StatementId):
		return validation("statementId", deref(req.StatementId), false, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)")
	case req.Action == nil || !actionPattern.MatchString(*req.Action):
		return validation("action", deref(req.Action), false, "Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])")
	case req.Principal == nil || !principalPattern.MatchString(*req.Principal):
		return validation("principal", deref(req.Principal), false, "Member must satisfy regular expression pattern: [^\\s]+")
	}
	st := metadata.Statement{Sid: *req.StatementId, Action: *req.Action, Principal: *req.Principal,
		SourceArn: req.SourceArn, SourceAccount: req.SourceAccount, EventSourceToken: req.EventSourceToken,
		PrincipalOrgID: req.PrincipalOrgID, FunctionURLAuthType: req.FunctionUrlAuthType}
	var resource string
	if _, resource, err = h.currentPolicy(r.Context(), t); err != nil {
		return err
	}
	_, err = h.modifyPolicy(r.Context(), t, func(p *metadata.Policy) error {
		if req.RevisionId != "" && req.RevisionId != p.RevisionID {
			return preconditionFailed()
		}
		for _, s := range p.Statements {
			if s.Sid == st.Sid {
				return lambdaerr.New(lambdaerr.ResourceConflict,
					"The statement id (%s) provided already exists. Please specify a new statement id, or remove the existing statement.", st.Sid)
			}
		}
		p.Statements = append(p.Statements, st)
		return nil
	})
	if err != nil {
		return err
	}
	doc, err := json.Marshal(policyStatement(st, resource))
	if err != nil {
		return err
	}
	h.log.Info("permission added", "requestId", reqID, "function", t.name, "qualifier", t.qualifier, "sid", st.Sid, "action", st.Action, "principal", st.Principal)
	writeJSON(w, http.StatusCreated, map[string]string{"Statement": string(doc)})
	return nil
}

func (h *Handler) getPolicy(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	t, err := h.policyTarget(r, rt)
	if err != nil {
		return err
	}
	p, resource, err := h.currentPolicy(r.Context(), t)
	if err != nil {
		return err
	}
	if p == nil || len(p.Statements) == 0 {
		return lambdaerr.New(lambdaerr.ResourceNotFound, "The resource you requested does not exist.")
	}
	doc := policyDocument{Version: "2012-10-17", ID: "default"}
	for _, s := range p.Statements {
		doc.Statement = append(doc.Statement, policyStatement(s, resource))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"Policy": string(b), "RevisionId": p.RevisionID})
	return nil
}

func (h *Handler) removePermission(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	t, err := h.policyTarget(r, rt)
	if err != nil {
		return err
	}
	if !statementIDPattern.MatchString(rt.sid) {
		return validation("statementId", rt.sid, false, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)")
	}
	rev := r.URL.Query().Get("RevisionId")
	_, err = h.modifyPolicy(r.Context(), t, func(p *metadata.Policy) error {
		if rev != "" && rev != p.RevisionID {
			return preconditionFailed()
		}
		i := slices.IndexFunc(p.Statements, func(s metadata.Statement) bool { return s.Sid == rt.sid })
		if i < 0 {
			return lambdaerr.New(lambdaerr.ResourceNotFound, "Statement %s is not found in resource policy.", rt.sid)
		}
		p.Statements = slices.Delete(p.Statements, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	h.log.Info("permission removed", "requestId", reqID, "function", t.name, "qualifier", t.qualifier, "sid", rt.sid)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// policyDocument is the IAM policy GetPolicy returns (as a JSON string).
type policyDocument struct {
	Version   string `json:"Version"`
	ID        string `json:"Id"`
	Statement []any  `json:"Statement"`
}

// policyStatement renders one grant as Lambda shows it in a policy.
func policyStatement(s metadata.Statement, resource string) any {
	type statement struct {
		Sid       string         `json:"Sid"`
		Effect    string         `json:"Effect"`
		Principal any            `json:"Principal"`
		Action    string         `json:"Action"`
		Resource  string         `json:"Resource"`
		Condition map[string]any `json:"Condition,omitempty"`
	}
	out := statement{Sid: s.Sid, Effect: "Allow", Action: s.Action, Resource: resource}
	switch m := accountPrincipal.FindStringSubmatch(s.Principal); {
	case s.Principal == "*":
		out.Principal = "*"
	case m != nil:
		id := m[2]
		if id == "" {
			id = m[1]
		}
		out.Principal = map[string]string{"AWS": "arn:aws:iam::" + id + ":root"}
	case len(s.Principal) > 4 && s.Principal[:4] == "arn:":
		out.Principal = map[string]string{"AWS": s.Principal}
	default:
		out.Principal = map[string]string{"Service": s.Principal}
	}
	cond := map[string]any{}
	if s.SourceArn != "" {
		cond["ArnLike"] = map[string]string{"AWS:SourceArn": s.SourceArn}
	}
	eq := map[string]string{}
	if s.SourceAccount != "" {
		eq["AWS:SourceAccount"] = s.SourceAccount
	}
	if s.EventSourceToken != "" {
		eq["lambda:EventSourceToken"] = s.EventSourceToken
	}
	if s.PrincipalOrgID != "" {
		eq["aws:PrincipalOrgID"] = s.PrincipalOrgID
	}
	if s.FunctionURLAuthType != "" {
		eq["lambda:FunctionUrlAuthType"] = s.FunctionURLAuthType
	}
	if len(eq) > 0 {
		cond["StringEquals"] = eq
	}
	if len(cond) > 0 {
		out.Condition = cond
	}
	return out
}

// invokeTarget is lookup for Invoke: a FunctionName naming another
// account's function (by ARN) resolves when that function's policy (of
// the qualifier invoked: the unqualified function, a version or an alias)
// allows the caller's account to invoke it; otherwise, and when there is
// no such function, it stays AccessDeniedException, so a caller learns
// nothing about other accounts' functions.
func (h *Handler) invokeTarget(r *http.Request, rt route) (*metadata.Function, *metadata.Alias, error) {
	fn, alias, err := h.lookup(r, rt)
	if err == nil {
		return fn, alias, nil
	}
	var foreign *foreignARN // escapes: declared only on the error path
	if !errors.As(err, &foreign) || foreign.owner == "" {
		return fn, alias, err
	}
	q := foreign.qualifier
	if query := r.URL.Query().Get("Qualifier"); query != "" {
		if q != "" && q != query {
			return nil, nil, lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The derived qualifier from the function name does not match the specified qualifier.")
		}
		q = query
	}
	if q == "" {
		q = metadata.LatestVersion
	}
	fn, alias, rerr := h.cfg.Functions.Resolve(r.Context(), foreign.owner, foreign.name, q)
	if rerr != nil {
		return nil, nil, err
	}
	p := fn.Policy
	if alias != nil {
		p = alias.Policy
	}
	if !p.AllowsInvoke(foreign.caller) {
		return nil, nil, err
	}
	return fn, alias, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// iamAction is the IAM action of the operation a request is, as Lambda
// names it in AccessDeniedException messages ("" when unknown).
func iamAction(method string, rt route) string {
	ops := map[string]map[string]string{
		"":                               {http.MethodGet: "GetFunction", http.MethodDelete: "DeleteFunction"},
		"configuration":                  {http.MethodGet: "GetFunctionConfiguration", http.MethodPut: "UpdateFunctionConfiguration"},
		"code":                           {http.MethodPut: "UpdateFunctionCode"},
		"invocations":                    {http.MethodPost: "InvokeFunction"},
		"versions":                       {http.MethodGet: "ListVersionsByFunction", http.MethodPost: "PublishVersion"},
		"aliases":                        {http.MethodGet: "ListAliases", http.MethodPost: "CreateAlias"},
		"policy":                         {http.MethodGet: "GetPolicy", http.MethodPost: "AddPermission", http.MethodDelete: "RemovePermission"},
		"concurrency":                    {http.MethodGet: "GetFunctionConcurrency", http.MethodPut: "PutFunctionConcurrency", http.MethodDelete: "DeleteFunctionConcurrency"},
		"url":                            {http.MethodGet: "GetFunctionUrlConfig", http.MethodPost: "CreateFunctionUrlConfig", http.MethodPut: "UpdateFunctionUrlConfig", http.MethodDelete: "DeleteFunctionUrlConfig"},
		"urls":                           {http.MethodGet: "ListFunctionUrlConfigs"},
		"response-streaming-invocations": {http.MethodPost: "InvokeFunction"},
		"provisioned-concurrency":        {http.MethodGet: "GetProvisionedConcurrencyConfig", http.MethodPut: "PutProvisionedConcurrencyConfig", http.MethodDelete: "DeleteProvisionedConcurrencyConfig"},
	}
	if rt.sub == "aliases" && rt.alias != "" {
		ops["aliases"] = map[string]string{http.MethodGet: "GetAlias", http.MethodPut: "UpdateAlias", http.MethodDelete: "DeleteAlias"}
	}
	if rt.function == "" {
		if method == http.MethodPost {
			return "lambda:CreateFunction"
		}
		return ""
	}
	if op := ops[rt.sub][method]; op != "" {
		return "lambda:" + op
	}
	return ""
}
