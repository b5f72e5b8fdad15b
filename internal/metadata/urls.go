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

// Function URL configurations live under their function's keys, so that
// deleting the function deletes them (Store.Delete purges <account>.<name>.>):
//
//	<account>.<name>.url            the URL of the unqualified function
//	<account>.<name>.url-latest     the URL of qualifier $LATEST
//	<account>.<name>.url.<A>        the URL of alias A
//
// and an index from a URL's id to its owner, read by the URL listener:
//
//	urlid.<id>                      a URLRef as JSON
//
// The index is written before the configuration and removed after it; a
// reader trusts an index entry only when the configuration it points to
// carries the same id, so an entry left behind (a crash between the two
// writes, a deleted function) names nothing.

// URLConfig is one function URL (Lambda's FunctionUrlConfig).
type URLConfig struct {
	// ID is the URL's id: the first label of its host name, 32 [a-z0-9].
	ID           string `json:"id"`
	Account      string `json:"account"`
	Region       string `json:"region"`
	FunctionName string `json:"functionName"`
	// Qualifier is "" (the unqualified function), LatestVersion or an
	// alias name.
	Qualifier  string    `json:"qualifier,omitempty"`
	AuthType   string    `json:"authType"`             // NONE or AWS_IAM
	InvokeMode string    `json:"invokeMode,omitempty"` // BUFFERED (default) or RESPONSE_STREAM
	Cors       *URLCors  `json:"cors,omitempty"`
	Created    time.Time `json:"created"`
	Modified   time.Time `json:"modified"`

	// KVRevision is the revision this value was read at; UpdateURLConfig
	// writes on condition that it is still current.
	KVRevision uint64 `json:"-"`
}

// URLCors is a function URL's CORS configuration (Lambda's Cors).
type URLCors struct {
	AllowCredentials bool     `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           int      `json:"MaxAge,omitempty"`
}

// ARN is the function ARN the URL invokes, qualified when Qualifier is set.
func (c *URLConfig) ARN() string {
	a := "arn:aws:lambda:" + c.Region + ":" + c.Account + ":function:" + c.FunctionName
	if c.Qualifier != "" {
		a += ":" + c.Qualifier
	}
	return a
}

// URLRef is what the URL id index stores.
type URLRef struct {
	Account      string `json:"account"`
	FunctionName string `json:"functionName"`
	Qualifier    string `json:"qualifier,omitempty"`
}

func urlKey(account, name, qualifier string) (string, bool) {
	if !validKeyPart(account) || !validKeyPart(name) {
		return "", false
	}
	switch {
	case qualifier == "":
		return account + "." + name + ".url", true
	case qualifier == LatestVersion:
		return account + "." + name + ".url-latest", true
	case validKeyPart(qualifier):
		return account + "." + name + ".url." + qualifier, true
	}
	return "", false
}

func urlIDKey(id string) (string, bool) {
	if !validKeyPart(id) {
		return "", false
	}
	return "urlid." + id, true
}

// ErrURLNotFound is wrapped by the ResourceNotFoundException of a missing
// URL configuration.
var ErrURLNotFound = errors.New("function url config not found")

func urlNotFound() error {
	return fmt.Errorf("%w: %w", lambdaerr.New(lambdaerr.ResourceNotFound, "The resource you requested does not exist."), ErrURLNotFound)
}

// GetURLConfig returns the URL of one qualifier ("" for the unqualified
// function); none is a ResourceNotFoundException.
func (s *Store) GetURLConfig(ctx context.Context, account, name, qualifier string) (*URLConfig, error) {
	key, ok := urlKey(account, name, qualifier)
	if !ok {
		return nil, urlNotFound()
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, urlNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: get url config %s: %w", key, err)
	}
	var c URLConfig
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("metadata: decode %s: %w", key, err)
	}
	c.KVRevision = e.Revision()
	return &c, nil
}

// CreateURLConfig stores a new URL configuration and indexes its ID. One
// that exists for the qualifier already is a ResourceConflictException.
func (s *Store) CreateURLConfig(ctx context.Context, c *URLConfig) error {
	key, ok := urlKey(c.Account, c.FunctionName, c.Qualifier)
	idKey, idOK := urlIDKey(c.ID)
	if !ok || !idOK {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid function url key %s/%s/%s", c.Account, c.FunctionName, c.Qualifier)
	}
	ref, _ := json.Marshal(URLRef{Account: c.Account, FunctionName: c.FunctionName, Qualifier: c.Qualifier})
	if _, err := s.kv.Put(ctx, idKey, ref); err != nil {
		return fmt.Errorf("metadata: index url %s: %w", c.ID, err)
	}
	data, _ := json.Marshal(c)
	rev, err := s.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		_ = s.kv.Purge(context.WithoutCancel(ctx), idKey)
		return lambdaerr.New(lambdaerr.ResourceConflict,
			"Failed to create function url config for [functionArn = %s]. Error message:  FunctionUrlConfig exists for this Lambda function", c.ARN())
	}
	if err != nil {
		return fmt.Errorf("metadata: create url config %s: %w", key, err)
	}
	c.KVRevision = rev
	return nil
}

// UpdateURLConfig replaces a URL configuration read by GetURLConfig, on
// condition that it did not change since (else ResourceConflictException).
func (s *Store) UpdateURLConfig(ctx context.Context, c *URLConfig) error {
	key, ok := urlKey(c.Account, c.FunctionName, c.Qualifier)
	if !ok {
		return urlNotFound()
	}
	data, _ := json.Marshal(c)
	rev, err := s.kv.Update(ctx, key, data, c.KVRevision)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return lambdaerr.New(lambdaerr.ResourceConflict, "The function url config of %s changed during the update; retry.", c.ARN())
		}
		return fmt.Errorf("metadata: update url config %s: %w", key, err)
	}
	c.KVRevision = rev
	return nil
}

// DeleteURLConfig removes the URL of one qualifier and its index entry;
// none is a ResourceNotFoundException.
func (s *Store) DeleteURLConfig(ctx context.Context, account, name, qualifier string) error {
	c, err := s.GetURLConfig(ctx, account, name, qualifier)
	if err != nil {
		return err
	}
	key, _ := urlKey(account, name, qualifier)
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("metadata: delete url config %s: %w", key, err)
	}
	if idKey, ok := urlIDKey(c.ID); ok {
		if err := s.kv.Purge(context.WithoutCancel(ctx), idKey); err != nil {
			s.log.Warn("metadata: removing a function url's index entry", "key", idKey, "err", err)
		}
	}
	return nil
}

// ListURLConfigs returns every URL configuration of a function, the
// unqualified one first, then by qualifier.
func (s *Store) ListURLConfigs(ctx context.Context, account, name string) ([]*URLConfig, error) {
	if !validKeyPart(account) || !validKeyPart(name) {
		return nil, nil
	}
	prefix := account + "." + name + "."
	keys, err := s.keys(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("metadata: list url configs of %s: %w", s.arn(account, name, ""), err)
	}
	var quals []string
	for _, k := range keys {
		switch tail := strings.TrimPrefix(k, prefix); {
		case tail == "url":
			quals = append(quals, "")
		case tail == "url-latest":
			quals = append(quals, LatestVersion)
		case strings.HasPrefix(tail, "url."):
			quals = append(quals, tail[len("url."):])
		}
	}
	sort.Strings(quals)
	var out []*URLConfig
	for _, q := range quals {
		c, err := s.GetURLConfig(ctx, account, name, q)
		if errors.Is(err, ErrURLNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// LookupURL returns the URL configuration with the given id; an unknown
// id, or an index entry whose configuration is gone or was replaced, is a
// ResourceNotFoundException wrapping ErrURLNotFound.
func (s *Store) LookupURL(ctx context.Context, id string) (*URLConfig, error) {
	idKey, ok := urlIDKey(id)
	if !ok {
		return nil, urlNotFound()
	}
	e, err := s.kv.Get(ctx, idKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, urlNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: look up url %s: %w", id, err)
	}
	var ref URLRef
	if err := json.Unmarshal(e.Value(), &ref); err != nil {
		return nil, fmt.Errorf("metadata: decode %s: %w", idKey, err)
	}
	c, err := s.GetURLConfig(ctx, ref.Account, ref.FunctionName, ref.Qualifier)
	if errors.Is(err, ErrURLNotFound) || (err == nil && c.ID != id) {
		s.dropStaleURLIndex(ctx, e)
		return nil, urlNotFound()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// staleURLIndexAge is how old an index entry naming no configuration must
// be before a lookup removes it: younger ones may belong to a
// CreateURLConfig that has not written its configuration yet.
const staleURLIndexAge = time.Minute

// dropStaleURLIndex removes an index entry left behind (its function or
// alias deleted, or a create that failed half way), on condition that it
// is still the entry that was read.
func (s *Store) dropStaleURLIndex(ctx context.Context, e jetstream.KeyValueEntry) {
	if time.Since(e.Created()) < staleURLIndexAge {
		return
	}
	if err := s.kv.Purge(context.WithoutCancel(ctx), e.Key(), jetstream.LastRevision(e.Revision())); err != nil &&
		!errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		s.log.Warn("metadata: removing a stale function url index entry", "key", e.Key(), "err", err)
	}
}
