package concurrency

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
)

func reason(err error) string {
	var le *lambdaerr.Error
	if errors.As(err, &le) && le.Type == lambdaerr.TooManyRequests && le.RetryAfterSeconds > 0 {
		return le.Reason
	}
	return ""
}

func TestLimiterPools(t *testing.T) {
	l, err := NewLimiter(5)
	if err != nil {
		t.Fatal(err)
	}
	l.SetReserved("a", "res", 2)
	if l.Unreserved("a") != 3 || l.Unreserved("b") != 5 {
		t.Fatalf("unreserved a=%d b=%d", l.Unreserved("a"), l.Unreserved("b"))
	}
	var rel []func()
	for range 2 {
		r, err := l.Acquire("a", "res")
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	if _, err := l.Acquire("a", "res"); reason(err) != ReasonReserved {
		t.Fatalf("third of reserved 2: %v", err)
	}
	for i := range 3 {
		r, err := l.Acquire("a", "other")
		if err != nil {
			t.Fatalf("unreserved %d: %v", i, err)
		}
		rel = append(rel, r)
	}
	if _, err := l.Acquire("a", "more"); reason(err) != ReasonAccount {
		t.Fatalf("fourth of unreserved 3: %v", err)
	}
	// Another account has its own pool.
	if r, err := l.Acquire("b", "x"); err != nil {
		t.Fatal(err)
	} else {
		r()
	}
	rel[0]()
	rel[0]() // a second release does nothing
	if f, _ := l.InFlight("a", "res"); f != 1 {
		t.Fatalf("in flight after a double release: %d", f)
	}
	r, err := l.Acquire("a", "res")
	if err != nil {
		t.Fatal(err)
	}
	rel = append(rel, r)
	// Clearing the reservation gives its 2 back to the shared pool (3 of 5
	// in use) and moves the function there; its in-flight executions
	// still release correctly.
	l.ClearReserved("a", "res")
	for i := range 2 {
		r, err := l.Acquire("a", "res")
		if err != nil {
			t.Fatalf("after clear, %d: %v", i, err)
		}
		rel = append(rel, r)
	}
	if _, err := l.Acquire("a", "res"); reason(err) != ReasonAccount {
		t.Fatalf("after clear, over the pool: %v", err)
	}
	for _, r := range rel[1:] {
		r()
	}
	if f, u := l.InFlight("a", "res"); f != 0 || u != 0 {
		t.Fatalf("in flight after all releases: %d %d", f, u)
	}
	l.SetReserved("a", "off", 0)
	if _, err := l.Acquire("a", "off"); reason(err) != ReasonReserved {
		t.Fatalf("reserved 0: %v", err)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l, _ := NewLimiter(1000)
	l.SetReserved("a", "f", 3)
	var mu sync.Mutex
	cur, peak := 0, 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r, err := l.Acquire("a", "f")
				if err != nil {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				r()
			}
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Fatalf("peak %d over reserved 3", peak)
	}
}

func TestBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b, err := NewBucket(2, 3, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !b.Allow("f") {
			t.Fatalf("token %d refused", i)
		}
	}
	if b.Allow("f") {
		t.Fatal("fourth token within the burst allowed")
	}
	if !b.Allow("g") {
		t.Fatal("another key shares the bucket")
	}
	now = now.Add(500 * time.Millisecond) // +1 token at 2/s
	if !b.Allow("f") || b.Allow("f") {
		t.Fatal("refill of one token")
	}
	now = now.Add(time.Hour)
	n := 0
	for b.Allow("f") && n < 10 {
		n++
	}
	if n != 3 {
		t.Fatalf("after a long pause %d tokens, want the burst 3", n)
	}
	if _, err := NewBucket(0, 1, nil); err == nil {
		t.Fatal("rate 0 accepted")
	}
}

// TestLimiterNodesShareTheAccountPool: three nodes of a cluster, each with
// its own Limiter, never admit more than the account's unreserved pool
// together; reserved concurrency is not split.
func TestLimiterNodesShareTheAccountPool(t *testing.T) {
	var nodes []*Limiter
	for range 3 {
		l, err := NewLimiter(10)
		if err != nil {
			t.Fatal(err)
		}
		l.SetReserved("a", "res", 1)
		l.SetNodes(3)
		nodes = append(nodes, l)
	}
	admitted := 0
	for _, l := range nodes {
		for {
			if _, err := l.Acquire("a", "f"); err != nil {
				if reason(err) != ReasonAccount {
					t.Fatalf("refusal %v, want %s", err, ReasonAccount)
				}
				break
			}
			admitted++
		}
	}
	if admitted != 9 { // the pool of 10-1=9, 3 per node
		t.Fatalf("3 nodes admitted %d of the account's unreserved 9", admitted)
	}
	if _, err := nodes[0].Acquire("a", "res"); err != nil {
		t.Fatalf("reserved concurrency split among nodes: %v", err)
	}
	// One node left: it may use the whole pool again.
	nodes[0].SetNodes(1)
	if _, err := nodes[0].Acquire("a", "f"); err != nil {
		t.Fatalf("alone again, still refused: %v", err)
	}
	if nodes[0].Unreserved("a") != 9 {
		t.Fatalf("Unreserved reports %d, want the account-wide 9", nodes[0].Unreserved("a"))
	}
}
