package metadata

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// publishLatest is the snapshot rule the frontend uses, reduced: reuse the
// newest version when the code and description are unchanged.
func publishLatest(latest, newest *Function) (*Function, error) {
	if newest != nil && newest.CodeSha256 == latest.CodeSha256 && newest.Description == latest.Description {
		return nil, nil
	}
	latest.RevisionID = "pub-" + latest.RevisionID
	return latest, nil
}

func TestPublishListDeleteVersions(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	const acct = "111111111111"
	f := fn(acct, "hello")
	f.CodeSha256 = "code1"
	if err := s.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	v1, created, err := s.PublishVersion(ctx, acct, "hello", publishLatest)
	if err != nil || !created || v1.Version != "1" || v1.RevisionID != "pub-r1" {
		t.Fatalf("publish 1 = %+v, %v, %v", v1, created, err)
	}
	again, created, err := s.PublishVersion(ctx, acct, "hello", publishLatest)
	if err != nil || created || again.Version != "1" {
		t.Fatalf("unchanged publish = %+v, %v, %v; want version 1 reused", again, created, err)
	}
	if _, err := s.Modify(ctx, acct, "hello", LatestVersion, func(f *Function) error {
		f.CodeSha256, f.RevisionID = "code2", "r2"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v2, created, err := s.PublishVersion(ctx, acct, "hello", publishLatest)
	if err != nil || !created || v2.Version != "2" || v2.CodeSha256 != "code2" {
		t.Fatalf("publish 2 = %+v, %v, %v", v2, created, err)
	}
	got, err := s.Get(ctx, acct, "hello", "1")
	if err != nil || got.CodeSha256 != "code1" {
		t.Fatalf("version 1 after update = %+v, %v; want code1", got, err)
	}
	if got.SandboxKey() == v2.SandboxKey() {
		t.Fatalf("versions share a sandbox key %s", got.SandboxKey())
	}
	vs, err := s.ListVersions(ctx, acct, "hello")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, v := range vs {
		order = append(order, v.Version)
	}
	if len(order) != 3 || order[0] != LatestVersion || order[1] != "1" || order[2] != "2" {
		t.Fatalf("versions = %v", order)
	}
	if err := s.DeleteVersion(ctx, acct, "hello", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, acct, "hello", "2"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("deleted version: %v", err)
	}
	if err := s.DeleteVersion(ctx, acct, "hello", "2"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.DeleteVersion(ctx, acct, "hello", LatestVersion); !lambdaerr.Is(err, lambdaerr.InvalidParameterValue) {
		t.Fatalf("delete $LATEST: %v", err)
	}
	// Numbers are not reused after a delete.
	if _, err := s.Modify(ctx, acct, "hello", LatestVersion, func(f *Function) error {
		f.CodeSha256 = "code3"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v3, _, err := s.PublishVersion(ctx, acct, "hello", publishLatest)
	if err != nil || v3.Version != "3" {
		t.Fatalf("publish after delete = %+v, %v; want version 3", v3, err)
	}
	n, size, err := s.AccountUsage(ctx, acct)
	if err != nil || n != 1 || size != 0 {
		t.Fatalf("usage = %d, %d, %v", n, size, err)
	}
}

func TestPublishConcurrentGetsDistinctNumbers(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	const acct = "111111111111"
	if err := s.Create(ctx, fn(acct, "hello")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := s.PublishVersion(ctx, acct, "hello", func(latest, _ *Function) (*Function, error) { return latest, nil })
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[v.Version] {
				t.Errorf("version %s published twice", v.Version)
			}
			seen[v.Version] = true
		}()
	}
	wg.Wait()
	if len(seen) != 6 {
		t.Fatalf("published %v", seen)
	}
}

func TestAliasesAndConcurrencySettings(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	const acct = "111111111111"
	f := fn(acct, "hello")
	f.CodeSize = 100
	if err := s.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	a := &Alias{Account: acct, Region: "us-east-1", FunctionName: "hello", Name: "live", FunctionVersion: "1", RevisionID: "a1"}
	if err := s.CreateAlias(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAlias(ctx, &Alias{Account: acct, FunctionName: "hello", Name: "live"}); !lambdaerr.Is(err, lambdaerr.ResourceConflict) {
		t.Fatalf("duplicate alias: %v", err)
	}
	if err := s.CreateAlias(ctx, &Alias{Account: acct, FunctionName: "nope", Name: "live"}); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("alias of missing function: %v", err)
	}
	for _, q := range []string{"", LatestVersion, "live", "1", "nope"} {
		fn, alias, err := s.Resolve(ctx, acct, "hello", q)
		switch q {
		case "", LatestVersion:
			if err != nil || fn.Version != LatestVersion || alias != nil {
				t.Errorf("Resolve(%q) = %v %v %v", q, fn, alias, err)
			}
		default: // version 1 does not exist: the alias dangles
			if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) || !strings.Contains(err.Error(), "function:hello:") {
				t.Errorf("Resolve(%q) = %v", q, err)
			}
		}
	}
	up, err := s.ModifyAlias(ctx, acct, "hello", "live", func(a *Alias) error {
		a.AdditionalVersionWeights = map[string]float64{"2": 0.25}
		return nil
	})
	if err != nil || up.AdditionalVersionWeights["2"] != 0.25 {
		t.Fatalf("ModifyAlias = %+v, %v", up, err)
	}
	if err := s.CreateAlias(ctx, &Alias{Account: acct, FunctionName: "hello", Name: "beta"}); err != nil {
		t.Fatal(err)
	}
	as, err := s.ListAliases(ctx, acct, "hello")
	if err != nil || len(as) != 2 || as[0].Name != "beta" || as[1].Name != "live" {
		t.Fatalf("ListAliases = %v, %v", as, err)
	}
	if err := s.DeleteAlias(ctx, acct, "hello", "beta"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAlias(ctx, acct, "hello", "beta"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("deleted alias: %v", err)
	}

	if err := s.PutReservedConcurrency(ctx, acct, "hello", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReservedConcurrency(ctx, acct, "nope", 7); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("reserve for missing function: %v", err)
	}
	if n, ok, err := s.GetReservedConcurrency(ctx, acct, "hello"); n != 7 || !ok || err != nil {
		t.Fatalf("GetReservedConcurrency = %d %v %v", n, ok, err)
	}
	rs, err := s.ListReservedConcurrency(ctx, "")
	if err != nil || len(rs) != 1 || rs[0].Reserved != 7 {
		t.Fatalf("ListReservedConcurrency = %v, %v", rs, err)
	}
	if err := s.PutProvisionedConfig(ctx, &ProvisionedConfig{Account: acct, FunctionName: "hello", Qualifier: "live", Requested: 3}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.ListProvisionedConfigs(ctx, acct, "")
	if err != nil || len(ps) != 1 || ps[0].Qualifier != "live" || ps[0].Requested != 3 {
		t.Fatalf("ListProvisionedConfigs = %v, %v", ps, err)
	}
	// None of the settings counts as a function or as code.
	if n, size, err := s.AccountUsage(ctx, acct); n != 1 || size != 100 || err != nil {
		t.Fatalf("AccountUsage = %d %d %v", n, size, err)
	}
	// Deleting the function deletes everything stored under it.
	if err := s.Delete(ctx, acct, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetReservedConcurrency(ctx, acct, "hello"); ok {
		t.Fatal("reserved concurrency survived the function")
	}
	if ps, _ := s.ListProvisionedConfigs(ctx, "", ""); len(ps) != 0 {
		t.Fatalf("provisioned configs survived the function: %v", ps)
	}
	if _, err := s.GetAlias(ctx, acct, "hello", "live"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("alias survived the function: %v", err)
	}
}
