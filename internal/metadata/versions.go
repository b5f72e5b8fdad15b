package metadata

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// SnapshotFunc decides what PublishVersion publishes. It gets the current
// $LATEST and the newest published version that still exists (nil when
// there is none); both are copies it may change. It returns the version
// to store (usually a modified latest; Version and LastPublished are set by
// the store), or nil to publish nothing and return newest instead, or an
// error that is returned as is (nothing is written). It may be called more
// than once when concurrent writers race.
type SnapshotFunc func(latest, newest *Function) (*Function, error)

// PublishVersion publishes $LATEST as the next version number. The number
// is taken from $LATEST's LastPublished, which is bumped with a write
// conditional on the $LATEST that snapshot saw, so a version is always an
// exact copy of one state of $LATEST and two publishers never get the same
// number. created is false when snapshot chose to reuse newest. A function
// without $LATEST is a ResourceNotFoundException.
func (s *Store) PublishVersion(ctx context.Context, account, name string, snapshot SnapshotFunc) (v *Function, created bool, err error) {
	var last error
	for range maxModifyAttempts {
		latest, err := s.Get(ctx, account, name, LatestVersion)
		if err != nil {
			return nil, false, err
		}
		newest, err := s.newestVersion(ctx, latest)
		if err != nil {
			return nil, false, err
		}
		cp := *latest
		var newestCp *Function
		if newest != nil {
			c := *newest
			newestCp = &c
		}
		v, err := snapshot(&cp, newestCp)
		if err != nil {
			return nil, false, err
		}
		if v == nil {
			if newest == nil {
				return nil, false, fmt.Errorf("metadata: publish %s: nothing to reuse", s.arn(account, name, ""))
			}
			return newest, false, nil
		}
		n := latest.LastPublished + 1
		latest.LastPublished = n
		err = s.Update(ctx, latest)
		var ce *conflictError
		if errors.As(err, &ce) {
			last = err
			continue
		}
		if err != nil {
			return nil, false, err
		}
		v.Account, v.Name = account, name
		v.Version = strconv.Itoa(n)
		v.LastPublished = 0
		v.Policy = nil // a version starts without a resource policy
		v.KVRevision = 0
		if err := s.Create(ctx, v); err != nil {
			return nil, false, fmt.Errorf("metadata: publish %s: %w", s.arn(account, name, v.Version), err)
		}
		return v, true, nil
	}
	return nil, false, last
}

// newestVersion returns the published version with the highest number that
// still exists, or nil.
func (s *Store) newestVersion(ctx context.Context, latest *Function) (*Function, error) {
	if latest.LastPublished == 0 {
		return nil, nil
	}
	f, err := s.Get(ctx, latest.Account, latest.Name, strconv.Itoa(latest.LastPublished))
	if err == nil {
		return f, nil
	}
	if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		return nil, err
	}
	vs, err := s.ListVersions(ctx, latest.Account, latest.Name)
	if err != nil {
		return nil, err
	}
	if len(vs) > 1 {
		return vs[len(vs)-1], nil
	}
	return nil, nil
}

// ListVersions returns every version of a function: $LATEST first, then
// the published versions in ascending numeric order. A function without
// $LATEST is a ResourceNotFoundException.
func (s *Store) ListVersions(ctx context.Context, account, name string) ([]*Function, error) {
	latest, err := s.Get(ctx, account, name, LatestVersion)
	if err != nil {
		return nil, err
	}
	keys, err := s.keys(ctx, account+"."+name+".*")
	if err != nil {
		return nil, fmt.Errorf("metadata: list versions of %s: %w", s.arn(account, name, ""), err)
	}
	var nums []int
	for _, k := range keys {
		tok := k[strings.LastIndexByte(k, '.')+1:]
		if n, ok := versionNumber(strings.TrimPrefix(tok, "v")); ok && strings.HasPrefix(tok, "v") {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := []*Function{latest}
	for _, n := range nums {
		f, err := s.Get(ctx, account, name, strconv.Itoa(n))
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue // deleted since listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// versionNumber parses a published version number ("1", "2", ...).
func versionNumber(s string) (int, bool) {
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// IsVersionNumber reports whether q is a published version's qualifier
// ("1", "2", ...; not "$LATEST", not "01").
func IsVersionNumber(q string) bool {
	_, ok := versionNumber(q)
	return ok
}

// DeleteVersion removes one published version. $LATEST cannot be deleted
// this way (InvalidParameterValueException); a missing version is a
// ResourceNotFoundException. Aliases are not checked here: the caller
// refuses to delete a version an alias points to.
func (s *Store) DeleteVersion(ctx context.Context, account, name, version string) error {
	if version == "" || version == LatestVersion {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "$LATEST version cannot be deleted without deleting the function.")
	}
	if _, err := s.Get(ctx, account, name, version); err != nil {
		return err
	}
	key := versionKey(account, name, version)
	if err := s.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("metadata: delete %s: %w", s.arn(account, name, version), err)
	}
	s.forget(ctx, key)
	return nil
}

// AccountUsage counts an account's functions and the code size of all
// their versions ($LATEST and published), as GetAccountSettings reports.
func (s *Store) AccountUsage(ctx context.Context, account string) (functions int, totalCodeSize int64, err error) {
	if !validKeyPart(account) {
		return 0, 0, nil
	}
	keys, err := s.keys(ctx, account+".*.*")
	if err != nil {
		return 0, 0, fmt.Errorf("metadata: usage of %s: %w", account, err)
	}
	for _, k := range keys {
		parts := strings.Split(k, ".")
		if len(parts) != 3 {
			continue
		}
		var version string
		switch {
		case parts[2] == "latest":
			version = LatestVersion
		case strings.HasPrefix(parts[2], "v") && IsVersionNumber(parts[2][1:]):
			version = parts[2][1:]
		default:
			continue
		}
		f, err := s.Get(ctx, account, parts[1], version)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		if version == LatestVersion {
			functions++
		}
		totalCodeSize += f.CodeSize
	}
	return functions, totalCodeSize, nil
}
