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
//
// Version and alias reads are served from a read cache kept current by a
// watch of the bucket (cache.go explains the consistency rules, watch.go
// the watch's lifecycle).
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
//
// Reads of function versions and aliases (Get, GetAlias, Resolve and the
// listings built on them) are answered from an in-memory cache kept
// current by a KV watch (cache.go, watch.go): a write of this process is
// visible to its reads as soon as the write returns; a change of another
// process sharing the bucket once the watch delivers it (normally well
// under a millisecond later), except that a version or alias the cache
// does not hold is always asked of the KV before the answer is "not
// found", so what another node has just created is readable here at once.
// Until the watch has replayed the bucket, and
// whenever it is known to be broken, reads go to the KV. Every returned
// value is the caller's own copy. Close stops the watch.
type Store struct {
	kv       jetstream.KeyValue
	region   string
	log      *slog.Logger
	replicas int // of the bucket

	cache *cache
	// watch is nil when the store was built without one (tests, or a
	// JetStream without a NATS connection): then every read goes to the KV.
	watch *watcher
}

// Option configures a Store.
type Option func(*Store)

// WithRegion sets the region used in the ARNs of error messages (default
// "us-east-1"). It does not change what is stored: each Function carries
// its own Region.
func WithRegion(region string) Option { return func(s *Store) { s.region = region } }

// WithReplicas sets the function bucket's replicas (default 1); an
// existing bucket with another count is updated.
func WithReplicas(n int) Option { return func(s *Store) { s.replicas = n } }

// WithLogger sets where the store reports problems of its bucket watch
// (default: slog.Default()).
func WithLogger(log *slog.Logger) Option { return func(s *Store) { s.log = log } }

// NewStore opens (creating when missing) the function bucket and starts
// the watch that keeps the read cache current; it does not wait for the
// watch's replay (reads go to the KV meanwhile). ctx covers opening the
// bucket only. Call Close when done with the store.
func NewStore(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	s, err := newStore(ctx, js, opts...)
	if err != nil {
		return nil, err
	}
	s.startWatch(js)
	return s, nil
}

// newStore opens the bucket without starting the watch: until startWatch,
// every read goes to the KV.
func newStore(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	if js == nil {
		return nil, errors.New("metadata: nil JetStream")
	}
	s := &Store{region: "us-east-1", cache: newCache()}
	for _, o := range opts {
		o(s)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DefaultBucket,
		Description: "Flint function configurations",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, s.replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("metadata: open bucket %s: %w", DefaultBucket, err)
	}
	s.kv = kv
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// startWatch starts the watch keeping the cache current. Called once.
func (s *Store) startWatch(js jetstream.JetStream) {
	if nc := js.Conn(); nc != nil {
		s.watch = startWatcher(s.kv, nc, s.cache, s.log)
	}
}

// Close stops the bucket watch and waits (until ctx ends) for it to end.
// The store stays usable: every read then goes to the KV. Close may be
// called more than once; it returns ctx.Err() if ctx ended first.
func (s *Store) Close(ctx context.Context) error {
	if s.watch == nil {
		s.cache.setCurrent(false)
		return nil
	}
	return s.watch.stop(ctx)
}

// remember writes through to the cache what this process just stored
// under key at revision rev.
func (s *Store) remember(key string, rev uint64, data []byte) {
	s.cache.applyKV(key, jetstream.KeyValuePut, rev, data)
}

// rememberEntry writes through an entry just read from the KV.
func (s *Store) rememberEntry(e jetstream.KeyValueEntry) {
	s.cache.applyKV(e.Key(), e.Operation(), e.Revision(), e.Value())
}

// forget records in the cache that this process just deleted or purged
// key. A purge does not return its revision, which the cache needs so the
// watch cannot later bring back an older value; the key's history (just
// the purge marker, or a newer write) gives it. If that fails the cache
// is dropped and replayed, rather than left possibly stale.
func (s *Store) forget(ctx context.Context, key string) {
	if _, ok := parseCacheKey(key); !ok {
		return
	}
	h, err := s.kv.History(ctx, key)
	if err == nil && len(h) > 0 {
		s.rememberEntry(h[len(h)-1])
		return
	}
	if s.watch != nil {
		s.log.Warn("metadata: cannot read back a deleted key; replaying the cache", "key", key, "error", err)
		s.watch.requestResync()
	} else {
		s.cache.setCurrent(false)
	}
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
	if k, ok := versionCacheKey(account, name, version); ok {
		if e, ok := s.cache.lookup(k); ok && e.fn != nil {
			return e.fn.Clone(), nil
		}
		// Absent from the cache may only mean that this node's watch has
		// not yet delivered a version another node just stored: the KV
		// answers before a 404, so a function is readable on every node
		// as soon as the node that created it answered.
	}
	return s.getKV(ctx, account, name, version)
}

// getKV is Get without the cache: one KV get and a JSON decode.
func (s *Store) getKV(ctx context.Context, account, name, version string) (*Function, error) {
	e, err := s.kv.Get(ctx, versionKey(account, name, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, s.notFound(account, name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: get %s: %w", s.arn(account, name, version), err)
	}
	s.rememberEntry(e)
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
	key := versionKey(f.Account, f.Name, f.Version)
	rev, err := s.kv.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return lambdaerr.New(lambdaerr.ResourceConflict, "Function already exist: %s", f.Name)
	}
	if err != nil {
		return fmt.Errorf("metadata: create %s: %w", f.ARN(), err)
	}
	s.remember(key, rev, data)
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
		cur, gerr := s.kv.Get(ctx, key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			return s.notFound(f.Account, f.Name, f.Version)
		}
		if gerr == nil {
			// The value was read from a cache the watch had not yet
			// brought up to date: bring it, so a retry reads this one.
			s.rememberEntry(cur)
		}
		return &conflictError{lambdaerr.New(lambdaerr.ResourceConflict,
			"The operation cannot be performed at this time. An update is in progress for resource: %s", f.ARN())}
	}
	if err != nil {
		return fmt.Errorf("metadata: update %s: %w", f.ARN(), err)
	}
	s.remember(key, rev, data)
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
		s.forget(ctx, k)
	}
	if err := s.kv.Purge(ctx, latest); err != nil {
		return fmt.Errorf("metadata: delete %s: %w", latest, err)
	}
	s.forget(ctx, latest)
	return nil
}

// Accounts lists, sorted, the accounts that have at least one function.
func (s *Store) Accounts(ctx context.Context) ([]string, error) {
	keys, err := s.keys(ctx, "*.*.latest")
	if err != nil {
		return nil, fmt.Errorf("metadata: list accounts: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		if a, _, ok := strings.Cut(k, "."); ok && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out, nil
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
