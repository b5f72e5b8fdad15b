package placement

import (
	"context"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// TestSharedHostCountedOnce: on a Shared host the worker's own UsedMB
// counts, plus only the reservations made since that heartbeat; the older
// ones are in UsedMB already and are not counted twice.
func TestSharedHostCountedOnce(t *testing.T) {
	clock := newFakeClock()
	s := newService(t, clock)
	heartbeat(t, s, HostStatus{HostID: "w", MemoryMB: 1024, UsedMB: 256, Shared: true})
	if got := hostInfo(t, s, "w"); got.FreeMemoryMB != 768 {
		t.Fatalf("free with 256 MB used by other frontends: %+v", got)
	}
	r := place(t, s, 512, "")
	if got := hostInfo(t, s, "w"); got.FreeMemoryMB != 256 {
		t.Fatalf("free after a pending 512 MB reservation: %+v", got)
	}
	// The worker reports the sandbox: the reservation is in UsedMB now.
	clock.Advance(time.Second)
	heartbeat(t, s, HostStatus{HostID: "w", MemoryMB: 1024, UsedMB: 768, Shared: true})
	if got := hostInfo(t, s, "w"); got.FreeMemoryMB != 256 {
		t.Fatalf("free after the worker counted the sandbox: %+v (counted twice?)", got)
	}
	if _, err := s.Place(context.Background(), Request{MemoryMB: 512}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("placed 512 MB with 256 free: %v", err)
	}
	// The sandbox goes; the next heartbeat frees its memory.
	s.Release(r)
	clock.Advance(time.Second)
	heartbeat(t, s, HostStatus{HostID: "w", MemoryMB: 1024, UsedMB: 256, Shared: true})
	place(t, s, 512, "")
}

func TestPlaceSkipsNonWorkersAndExcluded(t *testing.T) {
	s := newService(t, nil)
	heartbeat(t, s, HostStatus{HostID: "api", MemoryMB: 8192, Roles: []string{RoleFrontend}})
	heartbeat(t, s, HostStatus{HostID: "w1", MemoryMB: 1024, Roles: []string{RoleWorker}})
	heartbeat(t, s, HostStatus{HostID: "w2", MemoryMB: 2048, Roles: []string{RoleWorker, RolePoller}})
	for range 3 {
		r, err := s.Place(context.Background(), Request{MemoryMB: 128, Exclude: []string{"w1"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.HostID != "w2" {
			t.Fatalf("placed on %s, want w2 (api runs no worker, w1 excluded)", r.HostID)
		}
	}
	s.Drop("w2")
	s.Drop("w2") // twice: no effect
	if _, ok := s.Host("w2"); ok {
		t.Fatal("w2 still listed after Drop")
	}
	if _, err := s.Place(context.Background(), Request{MemoryMB: 128, Exclude: []string{"w1"}}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("placed with every worker dropped or excluded: %v", err)
	}
	heartbeat(t, s, HostStatus{HostID: "w2", MemoryMB: 2048})
	if got := hostInfo(t, s, "w2"); got.Reservations != 0 {
		t.Fatalf("w2 rejoined with its old reservations: %+v", got)
	}
}
