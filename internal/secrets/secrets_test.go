package secrets

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/flintdev/flint/internal/backbone"
)

// TestLoadAgrees: servers racing to load a secret all get the one the
// first of them stored, and a later load (a restart) gets it again;
// secrets of different names differ.
func TestLoadAgrees(t *testing.T) {
	b, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx := context.Background()
	got := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := backbone.Start(backbone.Config{URL: b.ClientURL()})
			if err != nil {
				t.Error(err)
				return
			}
			defer o.Close()
			if got[i], err = Load(ctx, o.JetStream(), 1, "k", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, k := range got {
		if len(k) != Size || !bytes.Equal(k, got[0]) {
			t.Fatalf("load %d got %x, load 0 %x", i, k, got[0])
		}
	}
	again, err := Load(ctx, b.JetStream(), 1, "k", nil)
	if err != nil || !bytes.Equal(again, got[0]) {
		t.Fatalf("a later load: %x, %v", again, err)
	}
	other, err := Load(ctx, b.JetStream(), 1, "other", nil)
	if err != nil || bytes.Equal(other, got[0]) {
		t.Fatalf("another name: %x, %v", other, err)
	}
}
