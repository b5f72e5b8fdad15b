// Package metadata holds Flint's function configurations: the Function type
// and the Store that keeps them in a JetStream key/value bucket.
//
// Key layout (every key starts with the account, so one account's keys can
// be listed, watched or removed without touching another's):
//
//	<account>.<name>.latest          the $LATEST version (a Function as JSON)
//	<account>.<name>.v<N>            published version N (versions.go)
//	<account>.<name>.alias.<A>       alias A (an Alias as JSON, aliases.go)
//	<account>.<name>.concurrency     reserved concurrency (concurrency.go)
//	<account>.<name>.provisioned.<Q> provisioned concurrency of qualifier Q
//
// Function names match [a-zA-Z0-9-_]{1,64} and accounts are 12 digits, so
// neither contains the '.' separator.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// DefaultBucket is the KV bucket the store uses unless told otherwise.
const DefaultBucket = "flint-functions"

// maxModifyAttempts bounds Modify's read-modify-write retries.
const maxModifyAttempts = 16

// Store keeps function configurations in a JetStream KV bucket (file
// storage, history 1). It is safe for concurrent use, also from several
// processes sharing the bucket: writes are conditional on the revision that
// was read, so concurrent updates never silently overwrite one another.
type Store struct {
	kv     jetstream.KeyValue
	region string
}

// Option configures a Store.
type Option func(*Store)

// WithRegion sets the region used in the ARNs of error messages (default
// "us-east-1"). It does not change what is stored: each Function carries
// its own Region.
func WithRegion(region string) Option { return func(s *Store) { s.region = region } }

// NewStore opens (creating when missing) the function bucket.
func NewStore(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	if js == nil {
		return nil, errors.New("metadata: nil JetStream")
	}
	s := &Store{region: "us-east-1"}
	for _, o := range opts {
		o(s)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DefaultBucket,
		Description: "Flint function configurations",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("metadata: open bucket %s: %w", DefaultBucket, err)
	}
	s.kv = kv
	return s, nil
}

// versionKey is the key of one version of a function.
func versionKey(account, name, version string) string {
	if version == "" || version == LatestVersion {
		return account + "." + name + ".latest"
	}
	return account + "." + name + ".v" + version
}

// validKeyPart reports whether p can be used as one dot-separated token of
// a key: non-empty and only [a-zA-Z0-9-_].
func validKeyPart(p string) bool {
	if p == "" {
		return false
	}
	for _, c := range p {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func (s *Store) arn(account, name, version string) string {
	a := "arn:aws:lambda:" + s.region + ":" + account + ":function:" + name
	if version != "" && version != LatestVersion {
		a += ":" + version
	}
	return a
}

func (s *Store) notFound(account, name, version string) error {
	return lambdaerr.New(lambdaerr.ResourceNotFound, "Function not found: %s", s.arn(account, name, version))
}

func (s *Store) checkKey(account, name, version string) error {
	if !validKeyPart(account) || !validKeyPart(name) || (version != "" && version != LatestVersion && !validKeyPart(version)) {
		// A name that cannot be stored cannot exist either.
		return s.notFound(account, name, version)
	}
	return nil
}

// Get returns one version ("" or LatestVersion for $LATEST) of a function,
// with KVRevision set. A missing function is a ResourceNotFoundException.
func (s *Store) Get(ctx context.Context, account, name, version string) (*Function, error) {
	if err := s.checkKey(account, name, version); err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, versionKey(account, name, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, s.notFound(account, name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: get %s: %w", s.arn(account, name, version), err)
	}
	return decode(e)
}

func decode(e jetstream.KeyValueEntry) (*Function, error) {
	var f Function
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return nil, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	f.KVRevision = e.Revision()
	return &f, nil
}

// Create stores a new function version. A version that exists already is a
// ResourceConflictException ("Function already exist: name"). On success
// f.KVRevision is set to the stored revision.
func (s *Store) Create(ctx context.Context, f *Function) error {
	if err := s.checkKey(f.Account, f.Name, f.Version); err != nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid function key %s/%s/%s", f.Account, f.Name, f.Version)
	}
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("metadata: encode %s: %w", f.ARN(), err)
	}
	rev, err := s.kv.Create(ctx, versionKey(f.Account, f.Name, f.Version), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return lambdaerr.New(lambdaerr.ResourceConflict, "Function already exist: %s", f.Name)
	}
	if err != nil {
		return fmt.Errorf("metadata: create %s: %w", f.ARN(), err)
	}
	f.KVRevision = rev
	return nil
}

// Update replaces a stored version on condition that it is still at
// f.KVRevision (as read by Get). If another writer got there first the
// error is a ResourceConflictException and nothing is written; re-read and
// retry (Modify does this). A function deleted meanwhile is a
// ResourceNotFoundException. On success f.KVRevision is the new revision.
func (s *Store) Update(ctx context.Context, f *Function) error {
	if err := s.checkKey(f.Account, f.Name, f.Version); err != nil {
		return err
	}
	if f.KVRevision == 0 {
		return fmt.Errorf("metadata: update %s: value was not read from the store (KVRevision 0)", f.ARN())
	}
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("metadata: encode %s: %w", f.ARN(), err)
	}
	key := versionKey(f.Account, f.Name, f.Version)
	rev, err := s.kv.Update(ctx, key, data, f.KVRevision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		// Distinguish "deleted meanwhile" from "changed meanwhile".
		if _, gerr := s.kv.Get(ctx, key); errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			return s.notFound(f.Account, f.Name, f.Version)
		}
		return &conflictError{lambdaerr.New(lambdaerr.ResourceConflict,
			"The operation cannot be performed at this time. An update is in progress for resource: %s", f.ARN())}
	}
	if err != nil {
		return fmt.Errorf("metadata: update %s: %w", f.ARN(), err)
	}
	f.KVRevision = rev
	return nil
}

// conflictError marks a lost optimistic-concurrency race, so Modify can
// retry it without retrying ResourceConflictExceptions of other origins.
type conflictError struct{ err *lambdaerr.Error }

func (c *conflictError) Error() string { return c.err.Error() }
func (c *conflictError) Unwrap() error { return c.err }

// Modify applies mutate to the current value of a version and stores the
// result, re-reading and re-applying mutate when a concurrent writer won the
// race (a bounded number of times). mutate may be called more than once and
// must only change the Function it is given; an error from mutate is
// returned as is and nothing is written. It returns the stored value.
func (s *Store) Modify(ctx context.Context, account, name, version string, mutate func(*Function) error) (*Function, error) {
	var last error
	for range maxModifyAttempts {
		f, err := s.Get(ctx, account, name, version)
		if err != nil {
			return nil, err
		}
		if err := mutate(f); err != nil {
			return nil, err
		}
		err = s.Update(ctx, f)
		var ce *conflictError
		if errors.As(err, &ce) {
			last = err
			continue
		}
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, last
}

// Delete removes every key of a function (all versions and everything
// else stored under it). A function whose $LATEST does not exist is a
// ResourceNotFoundException.
func (s *Store) Delete(ctx context.Context, account, name string) error {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return err
	}
	keys, err := s.keys(ctx, account+"."+name+".>")
	if err != nil {
		return fmt.Errorf("metadata: delete %s: %w", s.arn(account, name, ""), err)
	}
	// $LATEST last: while it exists the function is visible, so a failure
	// half way leaves a function that can be deleted again.
	latest := versionKey(account, name, LatestVersion)
	for _, k := range keys {
		if k == latest {
			continue
		}
		if err := s.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("metadata: delete %s: %w", k, err)
		}
	}
	if err := s.kv.Purge(ctx, latest); err != nil {
		return fmt.Errorf("metadata: delete %s: %w", latest, err)
	}
	return nil
}

// keys lists the live keys matching a subject filter.
func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	l, err := s.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// List returns up to maxItems $LATEST functions of an account sorted by
// name, starting after marker ("" for the first page). nextMarker is ""
// on the last page, else the marker for the next page. Paging is stable:
// the marker is the last name returned, so functions created or deleted
// between pages neither repeat nor shift others out of the listing.
func (s *Store) List(ctx context.Context, account, marker string, maxItems int) ([]*Function, string, error) {
	if maxItems <= 0 {
		return nil, "", fmt.Errorf("metadata: list: maxItems %d must be positive", maxItems)
	}
	if !validKeyPart(account) {
		return nil, "", nil
	}
	keys, err := s.keys(ctx, account+".*.latest")
	if err != nil {
		return nil, "", fmt.Errorf("metadata: list %s: %w", account, err)
	}
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		parts := strings.Split(k, ".")
		if len(parts) == 3 && parts[1] > marker {
			names = append(names, parts[1])
		}
	}
	sort.Strings(names)
	out := make([]*Function, 0, min(len(names), maxItems))
	for _, name := range names {
		if len(out) == maxItems {
			return out, out[len(out)-1].Name, nil
		}
		f, err := s.Get(ctx, account, name, LatestVersion)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue // deleted since listing
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, f)
	}
	return out, "", nil
}
