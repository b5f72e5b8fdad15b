package backbone

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestEmbeddedSurvivesRestart stores a value, restarts the embedded server on
// the same data dir, and reads it back.
func TestEmbeddedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	b, err := Start(Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b, err = Start(Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kv, err = b.JetStream().KeyValue(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value()) != "v" {
		t.Fatalf("got %q after restart, want v", e.Value())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("empty config validated")
	}
	if err := (Config{URL: "nats://127.0.0.1:1"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
