package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Small per-function settings that Lambda keeps beside a function and that
// do not change its RevisionId (runtime management, recursion) are stored
// as JSON beside the function, so deleting the function deletes them:
//
//	<account>.<name>.setting.<kind>[.<qualifier>]   ($LATEST is "latest")

func settingKey(account, name, kind, qualifier string) string {
	k := account + "." + name + ".setting." + kind
	switch qualifier {
	case "":
	case LatestVersion:
		k += ".latest"
	default:
		k += "." + qualifier
	}
	return k
}

func validSettingKey(account, name, kind, qualifier string) bool {
	return validKeyPart(account) && validKeyPart(name) && validKeyPart(kind) &&
		(qualifier == "" || qualifier == LatestVersion || validKeyPart(qualifier))
}

// GetSetting reads the setting kind of a function (qualifier "" for one
// that belongs to the whole function) into v; found is false when it was
// never set. It does not check that the function exists.
func (s *Store) GetSetting(ctx context.Context, account, name, kind, qualifier string, v any) (found bool, err error) {
	if !validSettingKey(account, name, kind, qualifier) {
		return false, nil
	}
	e, err := s.kv.Get(ctx, settingKey(account, name, kind, qualifier))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("metadata: get %s of %s: %w", kind, s.arn(account, name, qualifier), err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("metadata: decode %s: %w", e.Key(), err)
	}
	return true, nil
}

// PutSetting stores the setting kind of a function. The function must
// exist (ResourceNotFoundException); checking the qualifier is the
// caller's job.
func (s *Store) PutSetting(ctx context.Context, account, name, kind, qualifier string, v any) error {
	if _, err := s.Get(ctx, account, name, LatestVersion); err != nil {
		return err
	}
	if !validSettingKey(account, name, kind, qualifier) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid setting %s of %s", kind, s.arn(account, name, qualifier))
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("metadata: encode %s of %s: %w", kind, s.arn(account, name, qualifier), err)
	}
	if _, err := s.kv.Put(ctx, settingKey(account, name, kind, qualifier), data); err != nil {
		return fmt.Errorf("metadata: put %s of %s: %w", kind, s.arn(account, name, qualifier), err)
	}
	return nil
}
