package metadata

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
)

func startBackbone(t *testing.T, dir string) *backbone.Backbone {
	t.Helper()
	b, err := backbone.Start(backbone.Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatalf("start backbone: %v", err)
	}
	return b
}

func newTestStore(t *testing.T) *Store {
	t.Helper()
	b := startBackbone(t, t.TempDir())
	t.Cleanup(b.Close)
	s, err := NewStore(context.Background(), b.JetStream())
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

func fn(account, name string) *Function {
	return &Function{
		Account: account, Region: "us-east-1", Name: name, Version: LatestVersion,
		Runtime: "provided.al2023", Handler: "bootstrap", MemorySize: 128, Timeout: 3,
		EphemeralMB: 512, Architecture: "x86_64", RevisionID: "r1",
		LastModified: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), State: "Active", LastUpdateStatus: "Successful",
	}
}

func TestCreateGet(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	f := fn("111111111111", "hello")
	f.Environment = map[string]string{"A": "1"}
	if err := s.Create(ctx, f); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if f.KVRevision == 0 {
		t.Fatal("Create did not set KVRevision")
	}
	got, err := s.Get(ctx, "111111111111", "hello", LatestVersion)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Name != "hello" || got.Environment["A"] != "1" || !got.LastModified.Equal(f.LastModified) || got.KVRevision != f.KVRevision {
		t.Fatalf("Get = %+v, want %+v", got, f)
	}
	err = s.Create(ctx, fn("111111111111", "hello"))
	if !lambdaerr.Is(err, lambdaerr.ResourceConflict) || lambdaerr.As(err).Message != "Function already exist: hello" {
		t.Fatalf("second Create = %v, want ResourceConflict", err)
	}
	_, err = s.Get(ctx, "111111111111", "nope", "")
	want := "Function not found: arn:aws:lambda:us-east-1:111111111111:function:nope"
	if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) || lambdaerr.As(err).Message != want {
		t.Fatalf("Get missing = %v, want %q", err, want)
	}
	_, err = s.Get(ctx, "111111111111", "hello", "3")
	if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) || lambdaerr.As(err).Message != want[:len(want)-4]+"hello:3" {
		t.Fatalf("Get version 3 = %v", err)
	}
	// Names that cannot be keys are simply not found.
	for _, bad := range []string{"", "a.b", "a*", ">", "a b"} {
		if _, err := s.Get(ctx, "111111111111", bad, ""); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			t.Errorf("Get(%q) = %v, want ResourceNotFound", bad, err)
		}
	}
}

func TestAccountIsolation(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	for _, f := range []*Function{fn("111111111111", "same"), fn("222222222222", "same"), fn("222222222222", "other")} {
		if err := s.Create(ctx, f); err != nil {
			t.Fatalf("Create %s: %v", f.ARN(), err)
		}
	}
	if _, err := s.Get(ctx, "333333333333", "same", ""); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get in third account = %v", err)
	}
	l1, _, err := s.List(ctx, "111111111111", "", 50)
	if err != nil || len(l1) != 1 || l1[0].Account != "111111111111" {
		t.Fatalf("List account 1 = %v, %v", l1, err)
	}
	if err := s.Delete(ctx, "111111111111", "same"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "222222222222", "same", ""); err != nil {
		t.Fatalf("delete in account 1 removed account 2's function: %v", err)
	}
	l2, _, err := s.List(ctx, "222222222222", "", 50)
	if err != nil || len(l2) != 2 {
		t.Fatalf("List account 2 = %d, %v", len(l2), err)
	}
}

func TestUpdateOptimistic(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := s.Create(ctx, fn("111111111111", "f")); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Get(ctx, "111111111111", "f", "")
	b, _ := s.Get(ctx, "111111111111", "f", "")
	a.Description = "from a"
	if err := s.Update(ctx, a); err != nil {
		t.Fatalf("Update a: %v", err)
	}
	b.Description = "from b"
	if err := s.Update(ctx, b); !lambdaerr.Is(err, lambdaerr.ResourceConflict) {
		t.Fatalf("stale Update = %v, want ResourceConflict", err)
	}
	got, _ := s.Get(ctx, "111111111111", "f", "")
	if got.Description != "from a" {
		t.Fatalf("Description = %q, stale write won", got.Description)
	}
	if err := s.Delete(ctx, "111111111111", "f"); err != nil {
		t.Fatal(err)
	}
	got.Description = "after delete"
	if err := s.Update(ctx, got); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Update after delete = %v, want ResourceNotFound", err)
	}
}

func TestModifyConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := s.Create(ctx, fn("111111111111", "f")); err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Modify(ctx, "111111111111", "f", "", func(f *Function) error {
				if f.Environment == nil {
					f.Environment = map[string]string{}
				}
				f.Environment[fmt.Sprintf("W%d", i)] = "x"
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Modify: %v", err)
		}
	}
	got, _ := s.Get(ctx, "111111111111", "f", "")
	if len(got.Environment) != writers {
		t.Fatalf("after %d concurrent Modify calls, %d survived: %v", writers, len(got.Environment), got.Environment)
	}
	// An error from mutate writes nothing.
	stop := lambdaerr.New(lambdaerr.PreconditionFailed, "no")
	if _, err := s.Modify(ctx, "111111111111", "f", "", func(f *Function) error { f.Description = "x"; return stop }); err != stop {
		t.Fatalf("Modify with failing mutate = %v", err)
	}
	if got2, _ := s.Get(ctx, "111111111111", "f", ""); got2.Description != "" || got2.KVRevision != got.KVRevision {
		t.Fatal("failed Modify wrote")
	}
}

func TestDeleteAllVersions(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	latest := fn("111111111111", "f")
	v1 := fn("111111111111", "f")
	v1.Version = "1"
	keep := fn("111111111111", "f2") // shares a name prefix
	for _, f := range []*Function{latest, v1, keep} {
		if err := s.Create(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "111111111111", "f"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, v := range []string{"", "1"} {
		if _, err := s.Get(ctx, "111111111111", "f", v); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			t.Errorf("Get version %q after delete = %v", v, err)
		}
	}
	if _, err := s.Get(ctx, "111111111111", "f2", ""); err != nil {
		t.Fatalf("f2 lost: %v", err)
	}
	if err := s.Delete(ctx, "111111111111", "f"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("second Delete = %v", err)
	}
	// The name can be used again.
	if err := s.Create(ctx, fn("111111111111", "f")); err != nil {
		t.Fatalf("re-Create after delete: %v", err)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	names := []string{"e", "a", "d", "b", "c"}
	for _, n := range names {
		if err := s.Create(ctx, fn("111111111111", n)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	marker := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		fs, next, err := s.List(ctx, "111111111111", marker, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) > 2 {
			t.Fatalf("page of %d > 2", len(fs))
		}
		for _, f := range fs {
			got = append(got, f.Name)
			if f.KVRevision == 0 {
				t.Fatal("List did not set KVRevision")
			}
		}
		if page == 0 {
			// Created between pages, sorting before the marker: not seen,
			// and it does not shift the others.
			if err := s.Create(ctx, fn("111111111111", "0")); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			break
		}
		marker = next
	}
	if fmt.Sprint(got) != "[a b c d e]" {
		t.Fatalf("paged names = %v", got)
	}
	if _, _, err := s.List(ctx, "111111111111", "", 0); err == nil {
		t.Fatal("List maxItems 0 accepted")
	}
}

func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := startBackbone(t, dir)
	s, err := NewStore(ctx, b.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	f := fn("111111111111", "durable")
	if err := s.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Description = "updated"
	if err := s.Update(ctx, f); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b2 := startBackbone(t, dir)
	defer b2.Close()
	s2, err := NewStore(ctx, b2.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(ctx, "111111111111", "durable", "")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if got.Description != "updated" || got.KVRevision != f.KVRevision {
		t.Fatalf("after restart = %+v", got)
	}
}
