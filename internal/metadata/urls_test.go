package metadata

import (
	"context"
	"errors"
	"testing"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// TestURLConfigs: URL configs are per account and qualifier, found by id,
// and gone with their function (its index entry then names nothing).
func TestURLConfigs(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	for _, acct := range []string{"111111111111", "222222222222"} {
		if err := s.Create(ctx, fn(acct, "web")); err != nil {
			t.Fatal(err)
		}
	}
	a := &URLConfig{ID: "aaaa", Account: "111111111111", Region: "us-east-1", FunctionName: "web", AuthType: "NONE"}
	live := &URLConfig{ID: "bbbb", Account: "111111111111", Region: "us-east-1", FunctionName: "web", Qualifier: "live", AuthType: "AWS_IAM"}
	latest := &URLConfig{ID: "cccc", Account: "111111111111", Region: "us-east-1", FunctionName: "web", Qualifier: LatestVersion, AuthType: "NONE"}
	other := &URLConfig{ID: "dddd", Account: "222222222222", Region: "us-east-1", FunctionName: "web", AuthType: "NONE"}
	for _, c := range []*URLConfig{a, live, latest, other} {
		if err := s.CreateURLConfig(ctx, c); err != nil {
			t.Fatalf("create %s: %v", c.ID, err)
		}
	}
	dup := *a
	dup.ID = "eeee"
	if err := s.CreateURLConfig(ctx, &dup); !lambdaerr.Is(err, lambdaerr.ResourceConflict) {
		t.Errorf("second create: %v", err)
	}
	if _, err := s.LookupURL(ctx, "eeee"); !errors.Is(err, ErrURLNotFound) {
		t.Errorf("the refused create's id: %v", err)
	}
	if c, err := s.LookupURL(ctx, "bbbb"); err != nil || c.Qualifier != "live" || c.ARN() != "arn:aws:lambda:us-east-1:111111111111:function:web:live" {
		t.Errorf("lookup: %+v %v", c, err)
	}
	list, err := s.ListURLConfigs(ctx, "111111111111", "web")
	if err != nil || len(list) != 3 || list[0].ID != "aaaa" || list[1].Qualifier != LatestVersion || list[2].Qualifier != "live" {
		t.Errorf("list: %v %v", list, err)
	}
	got, _ := s.GetURLConfig(ctx, "111111111111", "web", "")
	got.AuthType = "AWS_IAM"
	stale := *got
	if err := s.UpdateURLConfig(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateURLConfig(ctx, &stale); !lambdaerr.Is(err, lambdaerr.ResourceConflict) {
		t.Errorf("update from a stale read: %v", err)
	}
	if err := s.DeleteURLConfig(ctx, "111111111111", "web", "live"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupURL(ctx, "bbbb"); !errors.Is(err, ErrURLNotFound) {
		t.Errorf("lookup after delete: %v", err)
	}
	if err := s.Delete(ctx, "111111111111", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupURL(ctx, "aaaa"); !errors.Is(err, ErrURLNotFound) {
		t.Errorf("lookup after the function's deletion: %v", err)
	}
	if err := s.Create(ctx, fn("111111111111", "web")); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListURLConfigs(ctx, "111111111111", "web"); len(list) != 0 {
		t.Errorf("a re-created function inherited urls: %v", list)
	}
	if c, err := s.LookupURL(ctx, "dddd"); err != nil || c.Account != "222222222222" {
		t.Errorf("the other account's url: %+v %v", c, err)
	}
}
