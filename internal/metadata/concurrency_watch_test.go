package metadata

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/polltest"
)

// TestWatchReservedConcurrency: a second store (another node, on its own
// connection) hears the settings that existed before it watched, and every
// later set, change, removal and function deletion made through the first.
func TestWatchReservedConcurrency(t *testing.T) {
	ctx := context.Background()
	b := startBackbone(t, t.TempDir())
	t.Cleanup(b.Close)
	a, err := NewStore(ctx, b.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"early", "later", "gone"} {
		if err := a.Create(ctx, fn("111111111111", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutReservedConcurrency(ctx, "111111111111", "early", 5); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	stop, err := other.WatchReservedConcurrency(func(account, name string, n int, set bool) {
		mu.Lock()
		defer mu.Unlock()
		if set {
			seen[account+"/"+name] = fmt.Sprint(n)
		} else {
			seen[account+"/"+name] = "cleared"
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	expect := func(what string, want map[string]string) {
		t.Helper()
		polltest.Check(t, 10*time.Second, what, func() error {
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				return fmt.Errorf("seen %v, want %v", seen, want)
			}
			return nil
		})
	}
	expect("the setting stored before the watch", map[string]string{"111111111111/early": "5"})

	if err := a.PutReservedConcurrency(ctx, "111111111111", "later", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.PutReservedConcurrency(ctx, "111111111111", "gone", 2); err != nil {
		t.Fatal(err)
	}
	if err := a.PutReservedConcurrency(ctx, "111111111111", "early", 7); err != nil {
		t.Fatal(err)
	}
	expect("later settings", map[string]string{"111111111111/early": "7", "111111111111/later": "0", "111111111111/gone": "2"})

	if err := a.DeleteReservedConcurrency(ctx, "111111111111", "early"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "111111111111", "gone"); err != nil {
		t.Fatal(err)
	}
	expect("removals", map[string]string{"111111111111/early": "cleared", "111111111111/later": "0", "111111111111/gone": "cleared"})
}

// TestWatchProvisionedConfigs: another node hears the provisioned
// concurrency configs stored before it watched, later ones, changes,
// removals and the deletion of a function with its configs.
func TestWatchProvisionedConfigs(t *testing.T) {
	ctx := context.Background()
	b := startBackbone(t, t.TempDir())
	t.Cleanup(b.Close)
	a, err := NewStore(ctx, b.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	const acct = "111111111111"
	for _, name := range []string{"early", "gone"} {
		if err := a.Create(ctx, fn(acct, name)); err != nil {
			t.Fatal(err)
		}
	}
	put := func(name, q string, n int) {
		t.Helper()
		if err := a.PutProvisionedConfig(ctx, &ProvisionedConfig{Account: acct, FunctionName: name, Qualifier: q, Requested: n, LastModified: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	put("early", "1", 3)
	other, err := NewStore(ctx, connectOther(t, b))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	stop, err := other.WatchProvisionedConfigs(func(c *ProvisionedConfig, set bool) {
		mu.Lock()
		defer mu.Unlock()
		k := c.FunctionName + ":" + c.Qualifier
		if set {
			seen[k] = fmt.Sprint(c.Requested)
		} else {
			seen[k] = "cleared"
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	expect := func(what string, want map[string]string) {
		t.Helper()
		polltest.Check(t, 10*time.Second, what, func() error {
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				return fmt.Errorf("seen %v, want %v", seen, want)
			}
			return nil
		})
	}
	expect("the config stored before the watch", map[string]string{"early:1": "3"})
	put("early", "live", 2)
	put("gone", "1", 1)
	put("early", "1", 5)
	expect("later configs", map[string]string{"early:1": "5", "early:live": "2", "gone:1": "1"})
	if err := a.DeleteProvisionedConfig(ctx, acct, "early", "live"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, acct, "gone"); err != nil {
		t.Fatal(err)
	}
	expect("removals", map[string]string{"early:1": "5", "early:live": "cleared", "gone:1": "cleared"})
}
