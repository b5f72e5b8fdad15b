package layers

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
)

const acct = "111111111111"

func newStore(t *testing.T) *Store {
	t.Helper()
	b, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("start backbone: %v", err)
	}
	t.Cleanup(b.Close)
	s, err := New(context.Background(), Config{JS: b.JetStream()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func version(name string, runtimes ...string) *Version {
	return &Version{Account: acct, Region: "us-east-1", Name: name, CompatibleRuntimes: runtimes,
		CreatedDate: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), CodeDigest: "ab", CodeSize: 10}
}

func TestPublishGetListDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for i, rt := range []string{"python3.11", "nodejs20.x", "python3.11"} {
		v := version("lib", rt)
		if err := s.Publish(ctx, v); err != nil {
			t.Fatal(err)
		}
		if v.Number != int64(i+1) {
			t.Fatalf("version %d numbered %d", i+1, v.Number)
		}
	}
	if err := s.Publish(ctx, version("other")); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get(ctx, acct, "lib", 2)
	if err != nil || v.CompatibleRuntimes[0] != "nodejs20.x" || v.ARN().String() != "arn:aws:lambda:us-east-1:111111111111:layer:lib:2" {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	_, err = s.Get(ctx, acct, "lib", 9)
	if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) ||
		lambdaerr.As(err).Message != "Layer version arn:aws:lambda:us-east-1:111111111111:layer:lib:9 does not exist." {
		t.Fatalf("Get missing = %v", err)
	}
	vs, err := s.Versions(ctx, acct, "lib")
	if err != nil || len(vs) != 3 || vs[0].Number != 3 || vs[2].Number != 1 {
		t.Fatalf("Versions = %v, %v", vs, err)
	}
	all, err := s.All(ctx, acct)
	if err != nil || len(all) != 4 || all[0].Name != "lib" || all[3].Name != "other" {
		t.Fatalf("All = %v, %v", all, err)
	}
	other, _ := s.All(ctx, "222222222222")
	if len(other) != 0 {
		t.Fatalf("another account sees %d layer versions", len(other))
	}
	// Deleting is idempotent, and numbers are never reused.
	for range 2 {
		if err := s.Delete(ctx, acct, "lib", 3); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, acct, "lib", 3); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get deleted = %v", err)
	}
	for _, n := range []int64{1, 2} {
		if err := s.Delete(ctx, acct, "lib", n); err != nil {
			t.Fatal(err)
		}
	}
	v = version("lib")
	if err := s.Publish(ctx, v); err != nil || v.Number != 4 {
		t.Fatalf("publish after deleting all: number %d, %v", v.Number, err)
	}
}

func TestConcurrentPublishGetsDistinctNumbers(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	const n = 8
	var wg sync.WaitGroup
	nums := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := version("race")
			errs[i] = s.Publish(ctx, v)
			nums[i] = v.Number
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[nums[i]] || nums[i] < 1 || nums[i] > n {
			t.Fatalf("numbers %v: not 1..%d each once", nums, n)
		}
		seen[nums[i]] = true
	}
}

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	v := version("shared")
	if err := s.Publish(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Policy(ctx, acct, "shared", 1); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) ||
		lambdaerr.As(err).Message != "No policy is associated with the given resource." {
		t.Fatalf("Policy before grants = %v", err)
	}
	if _, err := s.AddStatement(ctx, acct, "shared", 2, Statement{Sid: "a", Principal: "*", Action: GetLayerVersionAction}, ""); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("AddStatement on missing version = %v", err)
	}
	if ok, _ := s.CanUse(ctx, v, "222222222222"); ok {
		t.Fatal("another account may use a layer without a grant")
	}
	p, err := s.AddStatement(ctx, acct, "shared", 1, Statement{Sid: "b", Principal: "222222222222", Action: GetLayerVersionAction}, "")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.CanUse(ctx, v, "222222222222"); !ok {
		t.Fatal("granted account may not use the layer")
	}
	if ok, _ := s.CanUse(ctx, v, "333333333333"); ok {
		t.Fatal("ungranted account may use the layer")
	}
	if _, err := s.AddStatement(ctx, acct, "shared", 1, Statement{Sid: "b", Principal: "*", Action: GetLayerVersionAction}, ""); !lambdaerr.Is(err, lambdaerr.ResourceConflict) {
		t.Fatalf("duplicate sid = %v", err)
	}
	if _, err := s.AddStatement(ctx, acct, "shared", 1, Statement{Sid: "c", Principal: "*", Action: GetLayerVersionAction}, "stale"); !lambdaerr.Is(err, lambdaerr.PreconditionFailed) {
		t.Fatalf("stale revision = %v", err)
	}
	p2, err := s.AddStatement(ctx, acct, "shared", 1, Statement{Sid: "c", Principal: "*", OrganizationID: "o-abcdefghij", Action: GetLayerVersionAction}, p.RevisionID)
	if err != nil || p2.RevisionID == p.RevisionID {
		t.Fatalf("AddStatement with revision = %+v, %v", p2, err)
	}
	got, err := s.Policy(ctx, acct, "shared", 1)
	if err != nil || got.RevisionID != p2.RevisionID || len(got.Statements) != 2 {
		t.Fatalf("Policy = %+v, %v", got, err)
	}
	var doc struct {
		Version   string
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(got.Document(v.ARN().String())), &doc); err != nil || doc.Version != "2012-10-17" || len(doc.Statement) != 2 {
		t.Fatalf("Document = %+v, %v", doc, err)
	}
	if p := doc.Statement[0]["Principal"].(map[string]any)["AWS"]; p != "arn:aws:iam::222222222222:root" {
		t.Fatalf("principal = %v", p)
	}
	if doc.Statement[1]["Condition"] == nil {
		t.Fatal("organization grant has no condition")
	}
	if err := s.RemoveStatement(ctx, acct, "shared", 1, "nope", ""); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("remove missing = %v", err)
	}
	if err := s.RemoveStatement(ctx, acct, "shared", 1, "b", ""); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.CanUse(ctx, v, "222222222222"); ok {
		t.Fatal("revoked grant still works (an organization grant must not count either)")
	}
	// The policy grows until the limit.
	var last error
	for i := range 200 {
		_, last = s.AddStatement(ctx, acct, "shared", 1, Statement{Sid: "s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Principal: "222222222222", Action: GetLayerVersionAction}, "")
		if last != nil {
			break
		}
	}
	if !lambdaerr.Is(last, lambdaerr.PolicyLengthExceeded) {
		t.Fatalf("policy growth ended with %v, want PolicyLengthExceeded", last)
	}
	// Deleting the version deletes its policy.
	if err := s.Delete(ctx, acct, "shared", 1); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.keys(ctx, acct+".shared.policy.*"); len(keys) != 0 {
		t.Fatalf("policy keys left: %v", keys)
	}
}
