package keystore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flintdev/flint/internal/auth"
)

// Profile is the profile of the shared credentials file that EnsureRoot
// writes.
const Profile = "flint"

// EnsureRoot makes sure the server's root key exists: the key in the
// credentials file at path (AWS shared-credentials format, profile
// "flint"), or, when there is no file yet, a new root key of account,
// written there with mode 0600. A key in the file that the store lacks (a
// backbone started afresh) is stored again as a root key of account: the
// file is the root key's source of truth. created reports a new key.
func (s *Store) EnsureRoot(ctx context.Context, path, account string) (k auth.Key, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		id, secret, err := parseCredentials(data, Profile)
		if err != nil {
			return auth.Key{}, false, fmt.Errorf("keystore: %s: %w", path, err)
		}
		have, ok, err := s.LookupKey(ctx, id)
		if err != nil {
			return auth.Key{}, false, err
		}
		if ok && have.SecretAccessKey == secret {
			return have, false, nil
		}
		if ok {
			return auth.Key{}, false, fmt.Errorf("keystore: %s: access key %s is in the key store with another secret", path, id)
		}
		k = auth.Key{AccessKeyID: id, SecretAccessKey: secret, Account: account, Root: true, Created: s.clock().UTC()}
		if err := s.put(ctx, k, true); err != nil {
			return auth.Key{}, false, err
		}
		return k, false, nil
	case errors.Is(err, os.ErrNotExist):
	default:
		return auth.Key{}, false, fmt.Errorf("keystore: read root credentials: %w", err)
	}
	if k, err = s.Create(ctx, account, true); err != nil {
		return auth.Key{}, false, err
	}
	if err := WriteCredentials(path, Profile, k); err != nil {
		// Not usable by anyone: remove it again.
		_ = s.Delete(context.WithoutCancel(ctx), k.AccessKeyID)
		return auth.Key{}, false, err
	}
	return k, true, nil
}

// ReadCredentials reads the key id and secret of profile from the shared
// credentials file at path.
func ReadCredentials(path, profile string) (id, secret string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read credentials: %w", err)
	}
	if id, secret, err = parseCredentials(data, profile); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return id, secret, nil
}

// WriteCredentials writes k as the only profile of an AWS shared
// credentials file at path, mode 0600, atomically.
func WriteCredentials(path, profile string, k auth.Key) error {
	body := fmt.Sprintf("# Flint access key of account %s. Use it with\n#   AWS_SHARED_CREDENTIALS_FILE=%s AWS_PROFILE=%s\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		k.Account, path, profile, profile, k.AccessKeyID, k.SecretAccessKey)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keystore: write credentials: %w", err)
	}
	return nil
}

// parseCredentials reads one profile's key id and secret from a shared
// credentials file.
func parseCredentials(data []byte, profile string) (id, secret string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			in = strings.TrimSpace(line[1:len(line)-1]) == profile
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("no aws_access_key_id and aws_secret_access_key in profile [%s]", profile)
	}
	if !validID(id) {
		return "", "", fmt.Errorf("profile [%s]: %q is not an access key id Flint can store", profile, id)
	}
	return id, secret, nil
}
