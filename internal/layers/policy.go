package layers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
)

// MaxPolicyBytes is Lambda's limit on a layer version's policy document.
const MaxPolicyBytes = 20 * 1024

// GetLayerVersionAction is the only action a layer version policy grants.
const GetLayerVersionAction = "lambda:GetLayerVersion"

// Statement is one grant of a layer version policy.
type Statement struct {
	Sid string `json:"sid"`
	// Principal is as given to AddLayerVersionPermission: a 12-digit
	// account, "*", or arn:aws:iam::ACCOUNT:root.
	Principal      string `json:"principal"`
	OrganizationID string `json:"organizationId,omitempty"`
	Action         string `json:"action"`
}

// Policy is a layer version's resource policy.
type Policy struct {
	RevisionID string      `json:"revisionId"`
	Statements []Statement `json:"statements"`

	kvRevision uint64
}

var rootPrincipal = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:iam::(\d{12}):root$`)

// principalAccount returns the account a principal names ("" for "*").
func principalAccount(p string) string {
	if m := rootPrincipal.FindStringSubmatch(p); m != nil {
		return m[1]
	}
	return p
}

// Allows reports whether the policy lets account use the layer version.
// A grant restricted to an organization grants nobody here: Flint has no
// organizations.
func (p *Policy) Allows(account string) bool {
	for _, st := range p.Statements {
		if st.OrganizationID != "" {
			continue
		}
		if st.Principal == "*" || principalAccount(st.Principal) == account {
			return true
		}
	}
	return false
}

// statementDoc is one statement as IAM spells it.
type statementDoc struct {
	Sid       string         `json:"Sid"`
	Effect    string         `json:"Effect"`
	Principal any            `json:"Principal"`
	Action    string         `json:"Action"`
	Resource  string         `json:"Resource"`
	Condition map[string]any `json:"Condition,omitempty"`
}

func (st Statement) doc(resource string) statementDoc {
	d := statementDoc{Sid: st.Sid, Effect: "Allow", Action: st.Action, Resource: resource}
	switch {
	case st.Principal == "*":
		d.Principal = "*"
	case rootPrincipal.MatchString(st.Principal):
		d.Principal = map[string]string{"AWS": st.Principal}
	default:
		d.Principal = map[string]string{"AWS": "arn:aws:iam::" + st.Principal + ":root"}
	}
	if st.OrganizationID != "" {
		d.Condition = map[string]any{"StringEquals": map[string]string{"aws:PrincipalOrgID": st.OrganizationID}}
	}
	return d
}

// StatementJSON is one statement as AddLayerVersionPermission returns it.
func (st Statement) StatementJSON(resource string) string {
	b, _ := json.Marshal(st.doc(resource))
	return string(b)
}

// Document is the policy as GetLayerVersionPolicy returns it.
func (p *Policy) Document(resource string) string {
	d := struct {
		Version   string         `json:"Version"`
		ID        string         `json:"Id"`
		Statement []statementDoc `json:"Statement"`
	}{Version: "2012-10-17", ID: "default"}
	for _, st := range p.Statements {
		d.Statement = append(d.Statement, st.doc(resource))
	}
	b, _ := json.Marshal(d)
	return string(b)
}

func newRevision() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Policy returns version n's policy. A missing version is
// ResourceNotFoundException; a version without statements is
// ResourceNotFoundException "No policy is associated with the given
// resource.", as in Lambda.
func (s *Store) Policy(ctx context.Context, account, name string, n int64) (*Policy, error) {
	p, err := s.policy(ctx, account, name, n)
	if err != nil {
		return nil, err
	}
	if len(p.Statements) == 0 {
		return nil, lambdaerr.New(lambdaerr.ResourceNotFound, "No policy is associated with the given resource.")
	}
	return p, nil
}

// policy reads the policy of an existing version (empty when none).
func (s *Store) policy(ctx context.Context, account, name string, n int64) (*Policy, error) {
	if _, err := s.Get(ctx, account, name, n); err != nil {
		return nil, err
	}
	key := policyKey(account, name, n)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return &Policy{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layers: get %s: %w", key, err)
	}
	var p Policy
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, fmt.Errorf("layers: decode %s: %w", key, err)
	}
	p.kvRevision = e.Revision()
	return &p, nil
}

func revisionMismatch() error {
	return lambdaerr.New(lambdaerr.PreconditionFailed,
		"The RevisionId provided does not match the latest RevisionId for the layer version. Call GetLayerVersionPolicy to retrieve the latest RevisionId for your resource.")
}

// modifyPolicy applies change to version n's policy and stores the result
// on condition nothing changed meanwhile (retrying a bounded number of
// times). wantRevision, when not "", must be the policy's current
// RevisionId.
func (s *Store) modifyPolicy(ctx context.Context, account, name string, n int64, wantRevision string, change func(*Policy) error) (*Policy, error) {
	key := policyKey(account, name, n)
	for range maxAttempts {
		p, err := s.policy(ctx, account, name, n)
		if err != nil {
			return nil, err
		}
		if wantRevision != "" && wantRevision != p.RevisionID {
			return nil, revisionMismatch()
		}
		if err := change(p); err != nil {
			return nil, err
		}
		p.RevisionID = newRevision()
		data, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("layers: encode %s: %w", key, err)
		}
		if p.kvRevision == 0 {
			_, err = s.kv.Create(ctx, key, data)
		} else {
			_, err = s.kv.Update(ctx, key, data, p.kvRevision)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("layers: write %s: %w", key, err)
		}
		return p, nil
	}
	return nil, lambdaerr.New(lambdaerr.ResourceConflict, "Too many concurrent changes of the policy of layer %s; try again.", name)
}

// AddStatement adds st to version n's policy (resource is the version's
// ARN, used to measure the document against MaxPolicyBytes). A statement
// id in use is ResourceConflictException; a wrong wantRevision
// PreconditionFailedException; a policy that would exceed MaxPolicyBytes
// PolicyLengthExceededException.
func (s *Store) AddStatement(ctx context.Context, account, name string, n int64, st Statement, wantRevision string) (*Policy, error) {
	resource := s.versionARN(account, name, n).String()
	return s.modifyPolicy(ctx, account, name, n, wantRevision, func(p *Policy) error {
		for _, old := range p.Statements {
			if old.Sid == st.Sid {
				return lambdaerr.New(lambdaerr.ResourceConflict,
					"The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", st.Sid)
			}
		}
		p.Statements = append(p.Statements, st)
		if len(p.Document(resource)) > MaxPolicyBytes {
			return lambdaerr.New(lambdaerr.PolicyLengthExceeded, "The final policy size (%d) is bigger than the limit (%d).",
				len(p.Document(resource)), MaxPolicyBytes)
		}
		return nil
	})
}

// RemoveStatement removes statement sid from version n's policy. A
// missing statement is ResourceNotFoundException.
func (s *Store) RemoveStatement(ctx context.Context, account, name string, n int64, sid, wantRevision string) error {
	_, err := s.modifyPolicy(ctx, account, name, n, wantRevision, func(p *Policy) error {
		for i, old := range p.Statements {
			if old.Sid == sid {
				p.Statements = append(p.Statements[:i], p.Statements[i+1:]...)
				return nil
			}
		}
		return lambdaerr.New(lambdaerr.ResourceNotFound, "Statement %s is not found in resource policy.", sid)
	})
	return err
}

// CanUse reports whether account may use layer version v: its owner
// always, another account when v's policy grants it.
func (s *Store) CanUse(ctx context.Context, v *Version, account string) (bool, error) {
	if v.Account == account {
		return true, nil
	}
	p, err := s.policy(ctx, v.Account, v.Name, v.Number)
	if err != nil {
		return false, err
	}
	return p.Allows(account), nil
}

// validSid is Lambda's StatementId pattern.
var validSid = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,100}$`)

// ValidStatementID reports whether s is a valid StatementId.
func ValidStatementID(s string) bool { return validSid.MatchString(s) }

// ValidPrincipal reports whether s is a valid layer permission principal.
func ValidPrincipal(s string) bool {
	return s == "*" || lambdafn.IsAccountID(s) || rootPrincipal.MatchString(s)
}

var validOrg = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)

// ValidOrganizationID reports whether s is a valid OrganizationId.
func ValidOrganizationID(s string) bool { return validOrg.MatchString(s) }
