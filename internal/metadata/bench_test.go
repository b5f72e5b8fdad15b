package metadata

import (
	"context"
	"testing"
)

// BenchmarkGet compares a Get answered by the KV ("kv": the path every
// Get took before the cache, one JetStream request and a JSON decode) with
// one answered by the watch-backed cache ("cache"), serially and with
// parallel callers (the frontend under concurrent invokes).
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	bb := startTestBackbone(b)
	s, _ := newCountedStore(b, bb.JetStream(), true)
	waitCurrent(b, s)
	f := fn("111111111111", "bench")
	f.Environment = map[string]string{"A": "1", "B": "2", "C": "3"}
	if err := s.Create(ctx, f); err != nil {
		b.Fatalf("Create: %v", err)
	}
	paths := []struct {
		name string
		get  func() (*Function, error)
	}{
		{"kv", func() (*Function, error) { return s.getKV(ctx, f.Account, f.Name, LatestVersion) }},
		{"cache", func() (*Function, error) { return s.Get(ctx, f.Account, f.Name, LatestVersion) }},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(p.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(100) // 200 callers on 2 CPUs, as under 200 concurrent invokes
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	if !s.cache.isCurrent() {
		b.Fatal("cache stopped being current during the benchmark")
	}
}
