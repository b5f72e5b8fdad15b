package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/nats-io/nats.go/jetstream"
)

// A function's tags are stored beside it, so deleting the function
// deletes them:
//
//	<account>.<name>.tags      {"tags":{"key":"value",...}}
//
// Tags belong to the function, not to a version or alias, and changing
// them does not change the function's RevisionId (as in Lambda).

func tagsKey(account, name string) string { return account + "." + name + ".tags" }

type storedTags struct {
	Tags map[string]string `json:"tags"`
}

// Tags returns a function's tags (empty, not nil, when it has none). The
// function must exist (ResourceNotFoundException).
func (s *Store) Tags(ctx context.Context, account, name string) (map[string]string, error) {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return nil, err
	}
	tags, _, err := s.getTags(ctx, account, name)
	return tags, err
}

func (s *Store) getTags(ctx context.Context, account, name string) (map[string]string, uint64, error) {
	e, err := s.kv.Get(ctx, tagsKey(account, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return map[string]string{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("metadata: get tags of %s: %w", s.arn(account, name, ""), err)
	}
	var st storedTags
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	if st.Tags == nil {
		st.Tags = map[string]string{}
	}
	return st.Tags, e.Revision(), nil
}

// ModifyTags changes a function's tags with mutate (a read-modify-write
// conditional on the tags read, retried on a concurrent change) and
// returns the result. An error from mutate is returned as is and nothing
// changes. The function must exist (ResourceNotFoundException).
func (s *Store) ModifyTags(ctx context.Context, account, name string, mutate func(tags map[string]string) error) (map[string]string, error) {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return nil, err
	}
	key := tagsKey(account, name)
	var last error
	for range maxModifyAttempts {
		tags, rev, err := s.getTags(ctx, account, name)
		if err != nil {
			return nil, err
		}
		next := maps.Clone(tags)
		if err := mutate(next); err != nil {
			return nil, err
		}
		data, _ := json.Marshal(storedTags{Tags: next})
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, data)
		} else {
			_, err = s.kv.Update(ctx, key, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			last = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("metadata: put tags of %s: %w", s.arn(account, name, ""), err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("metadata: put tags of %s: too many concurrent changes: %w", s.arn(account, name, ""), last)
}
