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

// Concurrency settings are stored beside the function, so deleting the
// function deletes them:
//
//	<account>.<name>.concurrency          reserved concurrency ({"reserved":N})
//	<account>.<name>.provisioned.<Q>      provisioned concurrency of qualifier Q

// Reserved is one function's reserved concurrency.
type Reserved struct {
	Account      string `json:"account"`
	FunctionName string `json:"functionName"`
	// Reserved is ReservedConcurrentExecutions; 0 disables the function.
	Reserved int `json:"reserved"`
}

// ProvisionedConfig is the provisioned concurrency requested for one
// version or alias of a function.
type ProvisionedConfig struct {
	Account      string `json:"account"`
	FunctionName string `json:"functionName"`
	// Qualifier is the version number or alias name.
	Qualifier    string    `json:"qualifier"`
	Requested    int       `json:"requested"`
	LastModified time.Time `json:"lastModified"`
}

func concurrencyKey(account, name string) string { return account + "." + name + ".concurrency" }

func provisionedKey(account, name, qualifier string) string {
	return account + "." + name + ".provisioned." + qualifier
}

// PutReservedConcurrency sets a function's reserved concurrency. The
// function must exist (ResourceNotFoundException). Checking it against the
// account's limit is the caller's job.
func (s *Store) PutReservedConcurrency(ctx context.Context, account, name string, reserved int) error {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return err
	}
	data, _ := json.Marshal(Reserved{Account: account, FunctionName: name, Reserved: reserved})
	if _, err := s.kv.Put(ctx, concurrencyKey(account, name), data); err != nil {
		return fmt.Errorf("metadata: put concurrency of %s: %w", s.arn(account, name, ""), err)
	}
	return nil
}

// GetReservedConcurrency returns a function's reserved concurrency; ok is
// false when none is set. It does not check that the function exists.
func (s *Store) GetReservedConcurrency(ctx context.Context, account, name string) (reserved int, ok bool, err error) {
	if !validKeyPart(account) || !validKeyPart(name) {
		return 0, false, nil
	}
	e, err := s.kv.Get(ctx, concurrencyKey(account, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("metadata: get concurrency of %s: %w", s.arn(account, name, ""), err)
	}
	var r Reserved
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return 0, false, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	return r.Reserved, true, nil
}

// DeleteReservedConcurrency removes a function's reserved concurrency. The
// function must exist (ResourceNotFoundException); removing a setting that
// is not there is not an error.
func (s *Store) DeleteReservedConcurrency(ctx context.Context, account, name string) error {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, concurrencyKey(account, name)); err != nil {
		return fmt.Errorf("metadata: delete concurrency of %s: %w", s.arn(account, name, ""), err)
	}
	return nil
}

// ListReservedConcurrency returns the reserved concurrency of every
// function of account ("" for every account) that has one.
func (s *Store) ListReservedConcurrency(ctx context.Context, account string) ([]Reserved, error) {
	filter := "*.*.concurrency"
	if account != "" {
		if !validKeyPart(account) {
			return nil, nil
		}
		filter = account + ".*.concurrency"
	}
	keys, err := s.keys(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("metadata: list concurrency: %w", err)
	}
	sort.Strings(keys)
	var out []Reserved
	for _, k := range keys {
		parts := strings.Split(k, ".")
		n, ok, err := s.GetReservedConcurrency(ctx, parts[0], parts[1])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Reserved{Account: parts[0], FunctionName: parts[1], Reserved: n})
		}
	}
	return out, nil
}

// PutProvisionedConfig stores (replaces) the provisioned concurrency of
// one qualifier. Checking that the qualifier exists is the caller's job.
func (s *Store) PutProvisionedConfig(ctx context.Context, c *ProvisionedConfig) error {
	if !validKeyPart(c.Account) || !validKeyPart(c.FunctionName) || !validKeyPart(c.Qualifier) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid provisioned concurrency key %s/%s/%s", c.Account, c.FunctionName, c.Qualifier)
	}
	data, _ := json.Marshal(c)
	if _, err := s.kv.Put(ctx, provisionedKey(c.Account, c.FunctionName, c.Qualifier), data); err != nil {
		return fmt.Errorf("metadata: put provisioned concurrency of %s: %w", s.arn(c.Account, c.FunctionName, c.Qualifier), err)
	}
	return nil
}

// GetProvisionedConfig returns the provisioned concurrency of one
// qualifier; none is a ProvisionedConcurrencyConfigNotFoundException-like
// ResourceNotFoundException (Lambda's message).
func (s *Store) GetProvisionedConfig(ctx context.Context, account, name, qualifier string) (*ProvisionedConfig, error) {
	notFound := lambdaerr.New(lambdaerr.ResourceNotFound, "No Provisioned Concurrency Config found for this function")
	if !validKeyPart(account) || !validKeyPart(name) || !validKeyPart(qualifier) {
		return nil, notFound
	}
	e, err := s.kv.Get(ctx, provisionedKey(account, name, qualifier))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: get provisioned concurrency of %s: %w", s.arn(account, name, qualifier), err)
	}
	var c ProvisionedConfig
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	return &c, nil
}

// DeleteProvisionedConfig removes the provisioned concurrency of one
// qualifier; a missing one is not an error.
func (s *Store) DeleteProvisionedConfig(ctx context.Context, account, name, qualifier string) error {
	if !validKeyPart(account) || !validKeyPart(name) || !validKeyPart(qualifier) {
		return nil
	}
	if err := s.kv.Purge(ctx, provisionedKey(account, name, qualifier)); err != nil {
		return fmt.Errorf("metadata: delete provisioned concurrency of %s: %w", s.arn(account, name, qualifier), err)
	}
	return nil
}

// ListProvisionedConfigs returns the provisioned concurrency configs of
// one function (name != "") or of every function of account (name == "";
// account "" for every account), sorted by key.
func (s *Store) ListProvisionedConfigs(ctx context.Context, account, name string) ([]*ProvisionedConfig, error) {
	a, n := account, name
	if a == "" {
		a = "*"
	} else if !validKeyPart(a) {
		return nil, nil
	}
	if n == "" {
		n = "*"
	} else if !validKeyPart(n) {
		return nil, nil
	}
	keys, err := s.keys(ctx, a+"."+n+".provisioned.*")
	if err != nil {
		return nil, fmt.Errorf("metadata: list provisioned concurrency: %w", err)
	}
	sort.Strings(keys)
	var out []*ProvisionedConfig
	for _, k := range keys {
		p := strings.Split(k, ".")
		c, err := s.GetProvisionedConfig(ctx, p[0], p[1], p[3])
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
