package keystore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/polltest"
)

func openStore(t *testing.T, bb *backbone.Backbone) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{JS: bb.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	s1, s2 := openStore(t, bb), openStore(t, bb) // two servers of one backbone

	if _, err := s1.Create(ctx, "12345", false); err == nil {
		t.Fatal("a 5-digit account was accepted")
	}
	k, err := s1.Create(ctx, "111111111111", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.AccessKeyID) != 20 || !strings.HasPrefix(k.AccessKeyID, "AKFL") || len(k.SecretAccessKey) != 40 || k.Root {
		t.Fatalf("key %+v", k)
	}
	polltest.Until(t, 10*time.Second, "the other server sees the new key", func() bool {
		got, ok, err := s2.LookupKey(ctx, k.AccessKeyID)
		return err == nil && ok && got.SecretAccessKey == k.SecretAccessKey && got.Account == "111111111111"
	})
	list, err := s2.List(ctx)
	if err != nil || len(list) != 1 || list[0].AccessKeyID != k.AccessKeyID || list[0].SecretAccessKey != "" {
		t.Fatalf("List = %+v, %v (want one key, no secret)", list, err)
	}
	if err := s2.Delete(ctx, k.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "the first server forgets the deleted key", func() bool {
		_, ok, err := s1.LookupKey(ctx, k.AccessKeyID)
		return err == nil && !ok
	})
	if err := s1.Delete(ctx, k.AccessKeyID); err == nil {
		t.Fatal("deleting a deleted key succeeded")
	}
	if _, ok, err := s1.LookupKey(ctx, "../../x"); ok || err != nil {
		t.Fatalf("lookup of a malformed id: %v %v", ok, err)
	}
}

func TestEnsureRoot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bb, err := backbone.Start(backbone.Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, bb)
	path := filepath.Join(dir, "credentials")
	root, created, err := s.EnsureRoot(ctx, path, "000000000000")
	if err != nil || !created || !root.Root || root.Account != "000000000000" {
		t.Fatalf("EnsureRoot = %+v %v %v", root, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "[flint]\naws_access_key_id = "+root.AccessKeyID+"\naws_secret_access_key = "+root.SecretAccessKey+"\n") {
		t.Fatalf("credentials file:\n%s", data)
	}
	again, created, err := s.EnsureRoot(ctx, path, "000000000000")
	if err != nil || created || again.AccessKeyID != root.AccessKeyID {
		t.Fatalf("second EnsureRoot = %+v %v %v", again, created, err)
	}

	// A fresh backbone (new data) with the old file: the key comes back.
	bb.Close()
	bb2, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb2.Close)
	s2 := openStore(t, bb2)
	back, created, err := s2.EnsureRoot(ctx, path, "000000000000")
	if err != nil || created || back.AccessKeyID != root.AccessKeyID || !back.Root {
		t.Fatalf("EnsureRoot on a fresh backbone = %+v %v %v", back, created, err)
	}
	if got, ok, err := s2.LookupKey(ctx, root.AccessKeyID); err != nil || !ok || got.SecretAccessKey != root.SecretAccessKey {
		t.Fatalf("root key not restored: %v %v", ok, err)
	}
}
