package queues

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{JetStream: bb.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReceiveExactlyOnce has concurrent receivers drain a queue: every
// message is received by exactly one of them.
func TestReceiveExactlyOnce(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	const n = 200
	for i := 0; i < n; i++ {
		if err := s.Send(ctx, "111111111111", "q", []byte(fmt.Sprint(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Another queue's messages are not mixed in.
	if err := s.Send(ctx, "111111111111", "other", []byte("x"), nil, ""); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < n; round++ {
				msgs, err := s.Receive(ctx, "111111111111", "q", 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					got[m.Body]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("received %d distinct messages, want %d", len(got), n)
	}
	for b, c := range got {
		if c != 1 {
			t.Fatalf("message %s received %d times", b, c)
		}
	}
	if m, _ := s.Peek(ctx, "111111111111", "other", 10); len(m) != 1 {
		t.Fatalf("other queue: %+v", m)
	}
}

func TestSendDeduplicatesByID(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := s.Send(ctx, "111111111111", "d", []byte("same"), map[string]string{"RequestID": "r1"}, "id-1"); err != nil {
			t.Fatal(err)
		}
	}
	m, err := s.Peek(ctx, "111111111111", "d", 10)
	if err != nil || len(m) != 1 || m[0].MessageID != "id-1" || m[0].Attributes["RequestID"] != "r1" {
		t.Fatalf("peek %+v %v", m, err)
	}
	if err := s.Send(ctx, "111111111111", "bad.name", nil, nil, ""); err == nil {
		t.Fatal("invalid queue name accepted")
	}
}
