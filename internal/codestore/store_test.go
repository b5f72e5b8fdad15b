package codestore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
)

func startBackbone(t *testing.T, dataDir string) *backbone.Backbone {
	t.Helper()
	b, err := backbone.Start(backbone.Config{DataDir: dataDir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newStore(t *testing.T, b *backbone.Backbone) *Store {
	t.Helper()
	s, err := New(Config{JS: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestStore returns a context for one test, a backbone of its own
// (closed when the test ends) and a Store on it.
func newTestStore(t *testing.T) (context.Context, *backbone.Backbone, *Store) {
	t.Helper()
	ctx := testCtx(t)
	b := startBackbone(t, t.TempDir())
	t.Cleanup(b.Close)
	return ctx, b, newStore(t, b)
}

// putGood stores goodZip in s, failing t on error, and returns the zip and
// its Package.
func putGood(ctx context.Context, t *testing.T, s *Store) ([]byte, Package) {
	t.Helper()
	z := goodZip(t)
	pkg, err := s.Put(ctx, z)
	if err != nil {
		t.Fatal(err)
	}
	return z, pkg
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPutUnpackRoundTrip(t *testing.T) {
	ctx, _, s := newTestStore(t)
	z, pkg := putGood(ctx, t, s)
	sum := sha256.Sum256(z)
	if pkg.Digest != hex.EncodeToString(sum[:]) || pkg.Sha256 != base64.StdEncoding.EncodeToString(sum[:]) || pkg.Size != int64(len(z)) {
		t.Fatalf("package %+v does not describe the zip", pkg)
	}
	if !s.Has(ctx, pkg.Digest) {
		t.Fatal("Has is false after Put")
	}
	got, err := s.Get(ctx, pkg.Digest)
	if err != nil || string(got) != string(z) {
		t.Fatalf("Get: %d bytes, %v", len(got), err)
	}

	dir := filepath.Join(t.TempDir(), "code", pkg.Digest) // parent created by Unpack
	if err := s.Unpack(ctx, pkg.Digest, dir); err != nil {
		t.Fatal(err)
	}
	checkGoodTree(t, dir)
	// The cache hit returns at once, leaving the tree as it is.
	marker := filepath.Join(dir, "lib", "a.txt")
	before, _ := os.Stat(marker)
	if err := s.Unpack(ctx, pkg.Digest, dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(marker)
	if !os.SameFile(before, after) {
		t.Error("a second Unpack replaced the cached tree")
	}
}

func TestPutIdempotent(t *testing.T) {
	ctx, b, s := newTestStore(t)
	z, p1 := putGood(ctx, t, s)
	stream, err := b.JetStream().Stream(ctx, "OBJ_"+DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	info1, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.Put(ctx, z)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Fatalf("second Put gave %+v, first %+v", p2, p1)
	}
	info2, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info1.State.LastSeq != info2.State.LastSeq {
		t.Fatalf("second Put of the same bytes wrote to the bucket (last seq %d -> %d)", info1.State.LastSeq, info2.State.LastSeq)
	}
}

func TestPutRejectsBadZipWithoutStoring(t *testing.T) {
	ctx, b, s := newTestStore(t)

	bad := buildZip(t, file("../escape", "x"))
	if _, err := s.Put(ctx, bad); !lambdaerr.Is(err, lambdaerr.InvalidParameterValue) {
		t.Fatalf("Put: %v, want InvalidParameterValue", err)
	}
	sum := sha256.Sum256(bad)
	if s.Has(ctx, hex.EncodeToString(sum[:])) {
		t.Fatal("a rejected zip was stored")
	}
	big, err := New(Config{JS: b.JetStream(), Limits: Limits{MaxZipBytes: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Put(ctx, goodZip(t)); !lambdaerr.Is(err, lambdaerr.RequestEntityTooLarge) || lambdaerr.As(err).Status() != 413 {
		t.Fatalf("Put over the zipped limit: %v, want RequestEntityTooLarge (413)", err)
	}
}

func TestPackageSurvivesRestart(t *testing.T) {
	ctx := testCtx(t)
	data := t.TempDir()
	b := startBackbone(t, data)
	pkg, err := newStore(t, b).Put(ctx, goodZip(t))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	b = startBackbone(t, data)
	defer b.Close()
	s := newStore(t, b)
	if !s.Has(ctx, pkg.Digest) {
		t.Fatal("package lost across a backbone restart")
	}
	dir := filepath.Join(t.TempDir(), pkg.Digest)
	if err := s.Unpack(ctx, pkg.Digest, dir); err != nil {
		t.Fatal(err)
	}
	checkGoodTree(t, dir)
}

func TestUnpackConcurrent(t *testing.T) {
	ctx := testCtx(t)
	b := startBackbone(t, t.TempDir())
	defer b.Close()
	// Two stores share nothing in memory, like two worker processes: their
	// Unpacks race on the rename.
	s1, s2 := newStore(t, b), newStore(t, b)
	pkg, err := s1.Put(ctx, goodZip(t))
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, pkg.Digest)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Go(func() { errs <- s.Unpack(ctx, pkg.Digest, dir) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkGoodTree(t, dir)
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("parent holds %q, want only the package dir (temp dirs left behind?)", names)
	}
}

func TestDeleteAndMissing(t *testing.T) {
	ctx, _, s := newTestStore(t)
	_, pkg := putGood(ctx, t, s)
	if err := s.Delete(ctx, pkg.Digest); err != nil {
		t.Fatal(err)
	}
	if s.Has(ctx, pkg.Digest) {
		t.Fatal("Has after Delete")
	}
	if err := s.Delete(ctx, pkg.Digest); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	dir := filepath.Join(t.TempDir(), pkg.Digest)
	if err := s.Unpack(ctx, pkg.Digest, dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unpack of a deleted package: %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Fatal("failed Unpack left the dir")
	}
	// Put again after Delete stores it again.
	if _, err := s.Put(ctx, goodZip(t)); err != nil {
		t.Fatal(err)
	}
	if !s.Has(ctx, pkg.Digest) {
		t.Fatal("re-Put after Delete did not store")
	}
	for _, bad := range []string{"", "../x", strings.Repeat("A", 64), strings.Repeat("a", 63)} {
		if err := s.Unpack(ctx, bad, filepath.Join(t.TempDir(), "x")); err == nil {
			t.Errorf("Unpack accepted digest %q", bad)
		}
	}
}
