package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Alias is a named pointer to a published version (or $LATEST) of a
// function, optionally sending a share of invocations to one more version.
// Field names follow Lambda's AliasConfiguration.
type Alias struct {
	Account      string `json:"account"`
	Region       string `json:"region"`
	FunctionName string `json:"functionName"`
	Name         string `json:"name"`
	// FunctionVersion is the version the alias points to.
	FunctionVersion string `json:"functionVersion"`
	Description     string `json:"description,omitempty"`
	// AdditionalVersionWeights is RoutingConfig.AdditionalVersionWeights:
	// version → share of invocations (0.0–1.0) routed there instead of
	// FunctionVersion.
	AdditionalVersionWeights map[string]float64 `json:"additionalVersionWeights,omitempty"`
	// RevisionID changes on every update of the alias.
	RevisionID   string    `json:"revisionId"`
	LastModified time.Time `json:"lastModified"`
	// Policy is the alias's resource-based policy; nil for none.
	Policy *Policy `json:"policy,omitempty"`

	// KVRevision is the revision of the store entry this value was read
	// from; UpdateAlias writes on condition that it is still current.
	KVRevision uint64 `json:"-"`
}

// ARN is the alias's ARN (the function ARN qualified with the alias name).
func (a *Alias) ARN() string {
	return "arn:aws:lambda:" + a.Region + ":" + a.Account + ":function:" + a.FunctionName + ":" + a.Name
}

// PickVersion chooses the version an invocation through a runs, given x
// uniform in [0, 1): one of its AdditionalVersionWeights with that
// probability, else its FunctionVersion.
func (a *Alias) PickVersion(x float64) string {
	acc := 0.0
	for v, wt := range a.AdditionalVersionWeights { // at most one entry
		acc += wt
		if x < acc {
			return v
		}
	}
	return a.FunctionVersion
}

func aliasKey(account, function, alias string) string {
	return account + "." + function + ".alias." + alias
}

func (s *Store) aliasNotFound(account, function, alias string) error {
	return lambdaerr.New(lambdaerr.ResourceNotFound, "Alias not found: %s", s.arn(account, function, alias))
}

// GetAlias returns one alias with KVRevision set; a missing alias is a
// ResourceNotFoundException.
func (s *Store) GetAlias(ctx context.Context, account, function, alias string) (*Alias, error) {
	if !validKeyPart(account) || !validKeyPart(function) || !validKeyPart(alias) {
		return nil, s.aliasNotFound(account, function, alias)
	}
	if e, ok := s.cache.lookup(cacheKey{account: account, name: function, alias: true, q: alias}); ok && e.alias != nil {
		return e.alias.clone(), nil
	}
	// Absent from the cache: the KV answers before a 404 (another node
	// may have just created the alias; see Get).
	e, err := s.kv.Get(ctx, aliasKey(account, function, alias))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, s.aliasNotFound(account, function, alias)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: get alias %s: %w", s.arn(account, function, alias), err)
	}
	var a Alias
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	a.KVRevision = e.Revision()
	s.rememberEntry(e)
	return &a, nil
}

// CreateAlias stores a new alias of an existing function ($LATEST must
// exist: ResourceNotFoundException otherwise). An existing alias of that
// name is a ResourceConflictException.
func (s *Store) CreateAlias(ctx context.Context, a *Alias) error {
	if !validKeyPart(a.Name) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid alias name %q", a.Name)
	}
	if _, err := s.Get(ctx, a.Account, a.FunctionName, LatestVersion); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("metadata: encode alias %s: %w", a.ARN(), err)
	}
	key := aliasKey(a.Account, a.FunctionName, a.Name)
	rev, err := s.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return lambdaerr.New(lambdaerr.ResourceConflict, "Alias already exists: %s", a.ARN())
	}
	if err != nil {
		return fmt.Errorf("metadata: create alias %s: %w", a.ARN(), err)
	}
	s.remember(key, rev, data)
	a.KVRevision = rev
	return nil
}

// ModifyAlias applies mutate to the current alias and stores it, retrying
// (a bounded number of times) when a concurrent writer won the race. An
// error from mutate is returned as is and nothing is written.
func (s *Store) ModifyAlias(ctx context.Context, account, function, alias string, mutate func(*Alias) error) (*Alias, error) {
	key := aliasKey(account, function, alias)
	for range maxModifyAttempts {
		a, err := s.GetAlias(ctx, account, function, alias)
		if err != nil {
			return nil, err
		}
		if err := mutate(a); err != nil {
			return nil, err
		}
		data, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("metadata: encode alias %s: %w", a.ARN(), err)
		}
		rev, err := s.kv.Update(ctx, key, data, a.KVRevision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			// Possibly read from a cache the watch had not yet brought
			// up to date: bring it, so the retry reads the current value.
			if cur, gerr := s.kv.Get(ctx, key); gerr == nil {
				s.rememberEntry(cur)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("metadata: update alias %s: %w", a.ARN(), err)
		}
		s.remember(key, rev, data)
		a.KVRevision = rev
		return a, nil
	}
	return nil, lambdaerr.New(lambdaerr.ResourceConflict,
		"The operation cannot be performed at this time. An update is in progress for resource: %s", s.arn(account, function, alias))
}

// DeleteAlias removes an alias; a missing alias is a
// ResourceNotFoundException.
func (s *Store) DeleteAlias(ctx context.Context, account, function, alias string) error {
	if _, err := s.GetAlias(ctx, account, function, alias); err != nil {
		return err
	}
	key := aliasKey(account, function, alias)
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("metadata: delete alias %s: %w", s.arn(account, function, alias), err)
	}
	s.forget(ctx, key)
	return nil
}

// ListAliases returns the aliases of a function sorted by name. A function
// without $LATEST is a ResourceNotFoundException.
func (s *Store) ListAliases(ctx context.Context, account, function string) ([]*Alias, error) {
	if _, err := s.Get(ctx, account, function, LatestVersion); err != nil {
		return nil, err
	}
	keys, err := s.keys(ctx, account+"."+function+".alias.*")
	if err != nil {
		return nil, fmt.Errorf("metadata: list aliases of %s: %w", s.arn(account, function, ""), err)
	}
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		names = append(names, k[strings.LastIndexByte(k, '.')+1:])
	}
	sort.Strings(names)
	out := make([]*Alias, 0, len(names))
	for _, n := range names {
		a, err := s.GetAlias(ctx, account, function, n)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Resolve returns the function version a qualifier names: "" or $LATEST, a
// version number, or an alias (then alias is set and fn is the alias's
// primary FunctionVersion; routing weights are the caller's business). A
// missing version or alias is a ResourceNotFoundException naming the
// qualified function ARN, as Lambda words it.
func (s *Store) Resolve(ctx context.Context, account, name, qualifier string) (fn *Function, alias *Alias, err error) {
	if qualifier == "" || qualifier == LatestVersion || IsVersionNumber(qualifier) {
		fn, err = s.Get(ctx, account, name, qualifier)
		return fn, nil, err
	}
	alias, err = s.GetAlias(ctx, account, name, qualifier)
	if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		return nil, nil, s.notFound(account, name, qualifier)
	}
	if err != nil {
		return nil, nil, err
	}
	fn, err = s.Get(ctx, account, name, alias.FunctionVersion)
	return fn, alias, err
}
