package metadata

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/polltest"
)

// countingKV counts the KV gets a Store makes, to tell cache answers from
// KV answers.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

// newCountedStore opens a store on js whose KV gets are counted; the watch
// is started only when watch is true.
func newCountedStore(t testing.TB, js jetstream.JetStream, watch bool) (*Store, *countingKV) {
	t.Helper()
	s, err := newStore(context.Background(), js)
	if err != nil {
		t.Fatalf("newStore: %v", err)
	}
	ckv := &countingKV{KeyValue: s.kv}
	s.kv = ckv
	if watch {
		s.startWatch(js)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, ckv
}

func waitCurrent(t testing.TB, s *Store) {
	t.Helper()
	polltest.Until(t, 10*time.Second, "the cache to become current", s.cache.isCurrent)
}

func startTestBackbone(t testing.TB) *backbone.Backbone {
	t.Helper()
	b, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatalf("start backbone: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// connectOther is a second connection to b, as another Flint server has.
func connectOther(t testing.TB, b *backbone.Backbone) jetstream.JetStream {
	t.Helper()
	o, err := backbone.Start(backbone.Config{URL: b.ClientURL()})
	if err != nil {
		t.Fatalf("connect second client: %v", err)
	}
	t.Cleanup(o.Close)
	return o.JetStream()
}

func TestCacheHitAfterCreate(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	s, ckv := newCountedStore(t, b.JetStream(), true)
	waitCurrent(t, s)
	f := fn("111111111111", "cached")
	f.Environment = map[string]string{"A": "1"}
	if err := s.Create(ctx, f); err != nil {
		t.Fatalf("Create: %v", err)
	}
	before := ckv.gets.Load()
	got, err := s.Get(ctx, f.Account, f.Name, LatestVersion)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if n := ckv.gets.Load() - before; n != 0 {
		t.Fatalf("Get made %d KV gets, want 0 (cache hit)", n)
	}
	if got.KVRevision != f.KVRevision || got.Environment["A"] != "1" || got.Handler != f.Handler || !got.LastModified.Equal(f.LastModified) {
		t.Fatalf("Get = %+v, want %+v", got, f)
	}
	// Callers own what they get: changing it changes nothing stored.
	got.Environment["A"] = "changed"
	got.Handler = "changed"
	again, err := s.Get(ctx, f.Account, f.Name, "")
	if err != nil {
		t.Fatalf("Get again: %v", err)
	}
	if again.Environment["A"] != "1" || again.Handler != f.Handler {
		t.Fatalf("cached value was changed through a returned copy: %+v", again)
	}
	if n := ckv.gets.Load() - before; n != 0 {
		t.Fatalf("cached reads made %d KV gets, want 0", n)
	}
	// A missing function is asked of the KV once before the 404: this
	// node's watch may not yet have delivered another node's create.
	if _, err := s.Get(ctx, f.Account, "missing", LatestVersion); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get missing: %v, want ResourceNotFound", err)
	}
	if n := ckv.gets.Load() - before; n != 1 {
		t.Fatalf("a 404 made %d KV gets, want 1", n)
	}
}

// TestWriteThrough checks that this process's writes are visible to its
// reads when they return, without the watch: the cache is marked current
// but no watch runs, so only write-through can put the values in.
func TestWriteThrough(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	s, ckv := newCountedStore(t, b.JetStream(), false)
	s.cache.setCurrent(true)
	const acct = "111111111111"
	f := fn(acct, "wt")
	if err := s.Create(ctx, f); err != nil {
		t.Fatalf("Create: %v", err)
	}
	m, err := s.Modify(ctx, acct, "wt", LatestVersion, func(f *Function) error { f.Description = "v2"; return nil })
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	got, err := s.Get(ctx, acct, "wt", LatestVersion)
	if err != nil || got.Description != "v2" || got.KVRevision != m.KVRevision {
		t.Fatalf("Get after Modify = %+v, %v; want Description v2 at revision %d", got, err, m.KVRevision)
	}
	v, created, err := s.PublishVersion(ctx, acct, "wt", func(latest, _ *Function) (*Function, error) { return latest, nil })
	if err != nil || !created {
		t.Fatalf("PublishVersion: %v, %v", created, err)
	}
	a := &Alias{Account: acct, Region: "us-east-1", FunctionName: "wt", Name: "live", FunctionVersion: v.Version}
	if err := s.CreateAlias(ctx, a); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	rf, ra, err := s.Resolve(ctx, acct, "wt", "live")
	if err != nil || ra == nil || ra.KVRevision != a.KVRevision || rf.Version != v.Version || rf.Description != "v2" {
		t.Fatalf("Resolve(live) = %+v, %+v, %v", rf, ra, err)
	}
	ma, err := s.ModifyAlias(ctx, acct, "wt", "live", func(a *Alias) error {
		a.AdditionalVersionWeights = map[string]float64{LatestVersion: 0.5}
		return nil
	})
	if err != nil {
		t.Fatalf("ModifyAlias: %v", err)
	}
	ga, err := s.GetAlias(ctx, acct, "wt", "live")
	if err != nil || ga.KVRevision != ma.KVRevision || ga.AdditionalVersionWeights[LatestVersion] != 0.5 {
		t.Fatalf("GetAlias after ModifyAlias = %+v, %v", ga, err)
	}
	// Modify read through the cache, the rest are cache answers.
	if n := ckv.gets.Load(); n != 0 {
		t.Fatalf("reads made %d KV gets, want 0", n)
	}
	if err := s.DeleteAlias(ctx, acct, "wt", "live"); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if _, err := s.GetAlias(ctx, acct, "wt", "live"); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("GetAlias after DeleteAlias: %v, want ResourceNotFound", err)
	}
	if err := s.DeleteVersion(ctx, acct, "wt", v.Version); err != nil {
		t.Fatalf("DeleteVersion: %v", err)
	}
	if _, err := s.Get(ctx, acct, "wt", v.Version); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get after DeleteVersion: %v, want ResourceNotFound", err)
	}
	if err := s.Delete(ctx, acct, "wt"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, acct, "wt", LatestVersion); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get after Delete: %v, want ResourceNotFound", err)
	}
	// Each of the three 404s asked the KV once (see TestCacheHitAfterCreate).
	if n := ckv.gets.Load(); n != 3 {
		t.Fatalf("reads made %d KV gets, want 3 (one per 404)", n)
	}
}

// TestDeleteRemovesFromCache deletes with the watch running and checks
// the deleted keys stay deleted once the watch has delivered everything,
// and that a re-created function is seen.
func TestDeleteRemovesFromCache(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	s, ckv := newCountedStore(t, b.JetStream(), true)
	waitCurrent(t, s)
	const acct = "111111111111"
	if err := s.Create(ctx, fn(acct, "gone")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	v, _, err := s.PublishVersion(ctx, acct, "gone", func(latest, _ *Function) (*Function, error) { return latest, nil })
	if err != nil {
		t.Fatalf("PublishVersion: %v", err)
	}
	if err := s.CreateAlias(ctx, &Alias{Account: acct, Region: "us-east-1", FunctionName: "gone", Name: "a", FunctionVersion: v.Version}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	if err := s.Delete(ctx, acct, "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	// Everything up to the delete has reached the watch once a marker
	// written after it has.
	marker := fn(acct, "marker")
	if err := s.Create(ctx, marker); err != nil {
		t.Fatalf("Create marker: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the watch to deliver the marker", func() bool {
		s.cache.mu.RLock()
		defer s.cache.mu.RUnlock()
		return s.cache.entries[cacheKey{account: acct, name: "marker", q: LatestVersion}].rev > 0 && s.cache.current
	})
	before := ckv.gets.Load()
	for _, q := range []string{LatestVersion, v.Version, "a"} {
		if _, _, err := s.Resolve(ctx, acct, "gone", q); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			t.Fatalf("Resolve(%s) after Delete: %v, want ResourceNotFound", q, err)
		}
	}
	// Each 404 asked the KV once (a tombstone may be older than another
	// node's re-create), and the KV agreed.
	if n := ckv.gets.Load() - before; n != 3 {
		t.Fatalf("reads made %d KV gets, want 3 (one per 404)", n)
	}
	again := fn(acct, "gone")
	again.Description = "again"
	if err := s.Create(ctx, again); err != nil {
		t.Fatalf("re-Create: %v", err)
	}
	if got, err := s.Get(ctx, acct, "gone", LatestVersion); err != nil || got.Description != "again" {
		t.Fatalf("Get after re-Create = %+v, %v", got, err)
	}
}

// TestOtherStoreSeesWrites runs two stores on separate connections to one
// backbone, as two Flint servers: each sees the other's writes through its
// watch and answers them from its cache.
func TestOtherStoreSeesWrites(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	s1, _ := newCountedStore(t, b.JetStream(), true)
	s2, ckv2 := newCountedStore(t, connectOther(t, b), true)
	waitCurrent(t, s1)
	waitCurrent(t, s2)
	const acct = "111111111111"
	if _, err := s2.Get(ctx, acct, "shared", LatestVersion); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get before create: %v, want ResourceNotFound", err)
	}
	before := ckv2.gets.Load()
	f := fn(acct, "shared")
	if err := s1.Create(ctx, f); err != nil {
		t.Fatalf("Create: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the second store to see the create", func() bool {
		got, err := s2.Get(ctx, acct, "shared", LatestVersion)
		return err == nil && got.KVRevision == f.KVRevision
	})
	m, err := s1.Modify(ctx, acct, "shared", LatestVersion, func(f *Function) error { f.MemorySize = 512; return nil })
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the second store to see the update", func() bool {
		got, err := s2.Get(ctx, acct, "shared", LatestVersion)
		return err == nil && got.KVRevision == m.KVRevision && got.MemorySize == 512
	})
	if err := s1.CreateAlias(ctx, &Alias{Account: acct, Region: "us-east-1", FunctionName: "shared", Name: "prod", FunctionVersion: LatestVersion}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the second store to see the alias", func() bool {
		_, a, err := s2.Resolve(ctx, acct, "shared", "prod")
		return err == nil && a != nil
	})
	// The second store's own write, based on what its cache holds.
	if _, err := s2.Modify(ctx, acct, "shared", LatestVersion, func(f *Function) error { f.Timeout = 30; return nil }); err != nil {
		t.Fatalf("Modify on second store: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the first store to see the second's update", func() bool {
		got, err := s1.Get(ctx, acct, "shared", LatestVersion)
		return err == nil && got.Timeout == 30 && got.MemorySize == 512
	})
	// The second store's reads of existing values came from its cache;
	// the first read after the create may have read through (the watch
	// not there yet), and its Modify may have refreshed one stale value
	// after a lost race.
	if n := ckv2.gets.Load() - before; n > 2 {
		t.Fatalf("second store made %d KV gets, want at most 2", n)
	}
	if err := s1.Delete(ctx, acct, "shared"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the second store to see the delete", func() bool {
		_, err := s2.Get(ctx, acct, "shared", LatestVersion)
		_, aerr := s2.GetAlias(ctx, acct, "shared", "prod")
		return lambdaerr.Is(err, lambdaerr.ResourceNotFound) && lambdaerr.Is(aerr, lambdaerr.ResourceNotFound)
	})
}

// TestNoRegression updates one function concurrently from two stores and
// checks that no read ever goes back to an older revision: each writer's
// next read sees at least its own write, and each store's successive reads
// never decrease.
func TestNoRegression(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	s1, _ := newCountedStore(t, b.JetStream(), true)
	s2, _ := newCountedStore(t, connectOther(t, b), true)
	waitCurrent(t, s1)
	waitCurrent(t, s2)
	const acct = "111111111111"
	if err := s1.Create(ctx, fn(acct, "race")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the second store to see the function", func() bool {
		_, err := s2.Get(ctx, acct, "race", LatestVersion)
		return err == nil
	})
	const writers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers+2)
	stop := make(chan struct{})
	for i := range writers {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				m, err := s.Modify(ctx, acct, "race", LatestVersion, func(f *Function) error {
					f.Description = strconv.Itoa(i) + "/" + strconv.Itoa(j)
					return nil
				})
				if lambdaerr.Is(err, lambdaerr.ResourceConflict) {
					continue // lost too many races in a row: allowed
				}
				if err != nil {
					errs <- err
					return
				}
				got, err := s.Get(ctx, acct, "race", LatestVersion)
				if err != nil {
					errs <- err
					return
				}
				if got.KVRevision < m.KVRevision {
					t.Errorf("writer %d: read revision %d after writing %d", i, got.KVRevision, m.KVRevision)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for _, s := range []*Store{s1, s2} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var last uint64
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.Get(ctx, acct, "race", LatestVersion)
				if err != nil {
					errs <- err
					return
				}
				if got.KVRevision < last {
					t.Errorf("read revision %d after %d", got.KVRevision, last)
					return
				}
				last = got.KVRevision
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Both stores end at the final revision.
	final, err := s1.getKV(ctx, acct, "race", LatestVersion)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []*Store{s1, s2} {
		polltest.Until(t, 10*time.Second, "store "+strconv.Itoa(i+1)+" to reach the final revision", func() bool {
			got, err := s.Get(ctx, acct, "race", LatestVersion)
			return err == nil && got.KVRevision == final.KVRevision && got.Description == final.Description
		})
	}
}

// TestFallbackBeforeReplay: until the watch has replayed the bucket,
// reads go to the KV; after, they are cache answers, and writes made
// before the watch started are in the cache.
func TestFallbackBeforeReplay(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	const acct = "111111111111"
	w, _ := newCountedStore(t, b.JetStream(), false)
	for i := range 20 {
		if err := w.Create(ctx, fn(acct, "f"+strconv.Itoa(i))); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if err := w.Delete(ctx, acct, "f0"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	s, ckv := newCountedStore(t, b.JetStream(), false)
	if _, err := s.Get(ctx, acct, "f1", LatestVersion); err != nil {
		t.Fatalf("Get before watch: %v", err)
	}
	if n := ckv.gets.Load(); n != 1 {
		t.Fatalf("Get before the replay made %d KV gets, want 1", n)
	}
	s.startWatch(b.JetStream())
	waitCurrent(t, s)
	before := ckv.gets.Load()
	for i := 1; i < 20; i++ {
		if _, err := s.Get(ctx, acct, "f"+strconv.Itoa(i), LatestVersion); err != nil {
			t.Fatalf("Get f%d: %v", i, err)
		}
	}
	if _, err := s.Get(ctx, acct, "f0", LatestVersion); !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		t.Fatalf("Get deleted f0: %v, want ResourceNotFound", err)
	}
	// Only the 404 asked the KV (see TestCacheHitAfterCreate).
	if n := ckv.gets.Load() - before; n != 1 {
		t.Fatalf("reads after the replay made %d KV gets, want 1", n)
	}
	// After Close, reads go to the KV again.
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	before = ckv.gets.Load()
	if _, err := s.Get(ctx, acct, "f1", LatestVersion); err != nil {
		t.Fatalf("Get after Close: %v", err)
	}
	if n := ckv.gets.Load() - before; n != 1 {
		t.Fatalf("Get after Close made %d KV gets, want 1", n)
	}
}

func TestParseCacheKey(t *testing.T) {
	for key, want := range map[string]cacheKey{
		"111111111111.f.latest":        {account: "111111111111", name: "f", q: LatestVersion},
		"111111111111.f.v12":           {account: "111111111111", name: "f", q: "12"},
		"111111111111.f.alias.prod":    {account: "111111111111", name: "f", alias: true, q: "prod"},
		"111111111111.f.concurrency":   {},
		"111111111111.f.provisioned.1": {},
		"111111111111.f.v01":           {},
		"111111111111.f":               {},
		"nodots":                       {},
	} {
		got, ok := parseCacheKey(key)
		if ok != (want != cacheKey{}) || got != want {
			t.Errorf("parseCacheKey(%q) = %+v, %v; want %+v", key, got, ok, want)
		}
	}
}

// TestCreatedElsewhereReadable: a function and alias another node just
// stored are readable here at once, even when this node's watch has not
// delivered them yet (simulated: the cache emptied but still current).
func TestCreatedElsewhereReadable(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	other, _ := newCountedStore(t, connectOther(t, b), false)
	s, _ := newCountedStore(t, b.JetStream(), true)
	waitCurrent(t, s)
	const acct = "111111111111"
	for i := range 20 {
		name := "fresh" + strconv.Itoa(i)
		if err := other.Create(ctx, fn(acct, name)); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := s.Get(ctx, acct, name, LatestVersion); err != nil {
			t.Fatalf("Get right after another node's Create: %v", err)
		}
	}
	if err := other.Create(ctx, fn(acct, "lagging")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := other.CreateAlias(ctx, &Alias{Account: acct, Region: "us-east-1", FunctionName: "lagging", Name: "live", FunctionVersion: LatestVersion}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the watch to deliver the alias", func() bool {
		e, ok := s.cache.lookup(cacheKey{account: acct, name: "lagging", alias: true, q: "live"})
		return ok && e.alias != nil
	})
	s.cache.reset() // as if the watch had not delivered them yet
	s.cache.setCurrent(true)
	if _, err := s.Get(ctx, acct, "lagging", LatestVersion); err != nil {
		t.Fatalf("Get with a lagging cache: %v", err)
	}
	if _, err := s.GetAlias(ctx, acct, "lagging", "live"); err != nil {
		t.Fatalf("GetAlias with a lagging cache: %v", err)
	}
	// What the read found went into the cache.
	if e, ok := s.cache.lookup(cacheKey{account: acct, name: "lagging", q: LatestVersion}); !ok || e.fn == nil {
		t.Fatalf("the read-through did not fill the cache: %+v %v", e, ok)
	}
}
