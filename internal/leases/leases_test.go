package leases

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/natstest"
)

// TestLimitHoldsAcrossNodes: three tables on three connections (to three
// NATS nodes) contend for 2 leases of one key; at no time do more than 2
// holders run, the others are throttled with Lambda's reserved-concurrency
// Reason, and expired leases of a "dead" holder free their slots.
func TestLimitHoldsAcrossNodes(t *testing.T) {
	c := natstest.Start(t, natstest.Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var tables []*Table
	for i := 0; i < 3; i++ {
		nc, err := nats.Connect(c.ClientURL(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := New(ctx, Config{JS: js})
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}

	var running, maxRunning, ran, throttled atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := tables[i%3].Acquire(ctx, "acct.fn", 2, time.Minute)
			if err != nil {
				if le := lambdaerr.As(err); le != nil && le.Reason == concurrency.ReasonReserved {
					throttled.Add(1)
					return
				}
				t.Errorf("acquire: %v", err)
				return
			}
			n := running.Add(1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			running.Add(-1)
			ran.Add(1)
			release()
		}()
	}
	wg.Wait()
	if maxRunning.Load() > 2 || ran.Load() < 2 || ran.Load()+throttled.Load() != 30 {
		t.Fatalf("max running %d (limit 2), ran %d, throttled %d of 30", maxRunning.Load(), ran.Load(), throttled.Load())
	}
	if n, err := tables[0].Count(ctx, "acct.fn"); err != nil || n != 0 {
		t.Fatalf("leases left after every release: %d, %v", n, err)
	}

	// A holder that dies never releases; its lease expires.
	if _, err := tables[0].Acquire(ctx, "acct.fn", 1, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := tables[1].Acquire(ctx, "acct.fn", 1, time.Minute); err == nil {
		t.Fatal("second lease of 1 granted while the first is live")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		release, err := tables[2].Acquire(ctx, "acct.fn", 1, time.Minute)
		if err == nil {
			release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired lease never freed its slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
