package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newService(t *testing.T, clock *fakeClock) *Service {
	t.Helper()
	cfg := Config{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if clock != nil {
		cfg.Clock = clock.Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func heartbeat(t *testing.T, s *Service, st HostStatus) {
	t.Helper()
	if err := s.Heartbeat(st); err != nil {
		t.Fatal(err)
	}
}

func place(t *testing.T, s *Service, mem int, digest string) Reservation {
	t.Helper()
	r, err := s.Place(context.Background(), Request{MemoryMB: mem, CodeDigest: digest, SandboxKey: "acct/fn/$LATEST/rev"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.MemoryMB != mem {
		t.Fatalf("bad reservation %+v for %d MB", r, mem)
	}
	return r
}

func hostInfo(t *testing.T, s *Service, id string) HostInfo {
	t.Helper()
	for _, h := range s.Hosts() {
		if h.HostID == id {
			return h
		}
	}
	t.Fatalf("host %s not listed", id)
	return HostInfo{}
}

func TestBestFitPicksTightestHost(t *testing.T) {
	s := newService(t, nil)
	heartbeat(t, s, HostStatus{HostID: "big", MemoryMB: 4096, MaxSandboxes: 10})
	heartbeat(t, s, HostStatus{HostID: "small", MemoryMB: 1024, MaxSandboxes: 10})
	heartbeat(t, s, HostStatus{HostID: "mid", MemoryMB: 2048, MaxSandboxes: 10})

	if r := place(t, s, 512, ""); r.HostID != "small" {
		t.Fatalf("512 MB placed on %s, want small (tightest fit)", r.HostID)
	}
	// small has 512 left: a 1024 MB sandbox must go to mid, the tightest
	// host that still fits.
	if r := place(t, s, 1024, ""); r.HostID != "mid" {
		t.Fatalf("1024 MB placed on %s, want mid", r.HostID)
	}
	if r := place(t, s, 3000, ""); r.HostID != "big" {
		t.Fatalf("3000 MB placed on %s, want big", r.HostID)
	}
	if got := hostInfo(t, s, "mid"); got.FreeMemoryMB != 1024 || got.Reservations != 1 || got.FreeSlots != 9 {
		t.Fatalf("mid after one 1024 MB placement: %+v", got)
	}
}

func TestCodeAffinityPreferred(t *testing.T) {
	s := newService(t, nil)
	heartbeat(t, s, HostStatus{HostID: "tight", MemoryMB: 1024, MaxSandboxes: 10})
	heartbeat(t, s, HostStatus{HostID: "warm", MemoryMB: 8192, MaxSandboxes: 10, CachedCode: []string{"aaaa", "bbbb"}})

	if r := place(t, s, 256, "bbbb"); r.HostID != "warm" {
		t.Fatalf("placed on %s, want warm (has the code cached)", r.HostID)
	}
	if r := place(t, s, 256, "cccc"); r.HostID != "tight" {
		t.Fatalf("uncached code placed on %s, want tight (best fit)", r.HostID)
	}
	// Affinity never overrides capacity.
	if r := place(t, s, 7900, "aaaa"); r.HostID != "warm" {
		t.Fatalf("placed on %s, want warm", r.HostID)
	}
	if r := place(t, s, 512, "aaaa"); r.HostID != "tight" {
		t.Fatalf("placed on %s after warm filled up, want tight", r.HostID)
	}
}

func TestExhaustionIsTooManyRequests(t *testing.T) {
	s := newService(t, nil)

	_, err := s.Place(context.Background(), Request{MemoryMB: 128})
	if !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("no hosts: err = %v, want TooManyRequests", err)
	}

	heartbeat(t, s, HostStatus{HostID: "h1", MemoryMB: 1024, MaxSandboxes: 2})
	place(t, s, 128, "")
	place(t, s, 128, "")
	_, err = s.Place(context.Background(), Request{MemoryMB: 128, SandboxKey: "k"})
	var le *lambdaerr.Error
	if !errors.As(err, &le) || le.Type != lambdaerr.TooManyRequests || le.Reason != ReasonNoCapacity {
		t.Fatalf("slots exhausted: err = %#v, want TooManyRequests/%s", err, ReasonNoCapacity)
	}
	if le.Status() != 429 {
		t.Fatalf("status %d, want 429", le.Status())
	}

	heartbeat(t, s, HostStatus{HostID: "h2", MemoryMB: 1024})
	place(t, s, 1000, "")
	if _, err := s.Place(context.Background(), Request{MemoryMB: 100}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("memory exhausted: err = %v, want TooManyRequests", err)
	}
	// h2 has no slot limit: its last 24 MB still take a sandbox.
	if r := place(t, s, 24, ""); r.HostID != "h2" {
		t.Fatalf("placed on %s, want h2", r.HostID)
	}
}

func TestDrainingHostGetsNothing(t *testing.T) {
	s := newService(t, nil)
	heartbeat(t, s, HostStatus{HostID: "h1", MemoryMB: 1024, MaxSandboxes: 4})
	r := place(t, s, 512, "")
	heartbeat(t, s, HostStatus{HostID: "h1", MemoryMB: 1024, MaxSandboxes: 4, Draining: true})
	if _, err := s.Place(context.Background(), Request{MemoryMB: 128}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("draining host: err = %v, want TooManyRequests", err)
	}
	// The reservation survives the heartbeat and can be released.
	if got := hostInfo(t, s, "h1"); got.ReservedMB != 512 || !got.Draining {
		t.Fatalf("draining host info %+v", got)
	}
	s.Release(r)
	if got := hostInfo(t, s, "h1"); got.ReservedMB != 0 {
		t.Fatalf("after release: %+v", got)
	}
}

func TestReleaseFreesAndIsIdempotent(t *testing.T) {
	s := newService(t, nil)
	heartbeat(t, s, HostStatus{HostID: "h1", MemoryMB: 1024, MaxSandboxes: 1})
	r := place(t, s, 1024, "")
	if _, err := s.Place(context.Background(), Request{MemoryMB: 1}); err == nil {
		t.Fatal("placed on a full host")
	}
	s.Release(r)
	s.Release(r)                                                    // twice: no effect
	s.Release(Reservation{ID: "nope", HostID: "h1", MemoryMB: 512}) // unknown: ignored
	got := hostInfo(t, s, "h1")
	if got.FreeMemoryMB != 1024 || got.FreeSlots != 1 || got.Reservations != 0 {
		t.Fatalf("after release: %+v", got)
	}
	r2 := place(t, s, 1024, "")
	if r2.ID == r.ID {
		t.Fatalf("reservation id %s reused", r.ID)
	}
}

func TestStaleHostsDropped(t *testing.T) {
	clock := newFakeClock()
	s := newService(t, clock)
	heartbeat(t, s, HostStatus{HostID: "quiet", MemoryMB: 4096})
	heartbeat(t, s, HostStatus{HostID: "chatty", MemoryMB: 1024})
	old := place(t, s, 512, "")
	if old.HostID != "chatty" {
		t.Fatalf("placed on %s, want chatty", old.HostID)
	}

	clock.Advance(DefaultStaleAfter - time.Second)
	heartbeat(t, s, HostStatus{HostID: "chatty", MemoryMB: 1024})
	clock.Advance(2 * time.Second) // quiet: silent for longer than DefaultStaleAfter; chatty: 2s.
	hosts := s.Hosts()
	if len(hosts) != 1 || hosts[0].HostID != "chatty" {
		t.Fatalf("hosts after quiet went stale: %+v", hosts)
	}
	if _, err := s.Place(context.Background(), Request{MemoryMB: 2048}); !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("placed 2048 MB with only chatty (1024) live: %v", err)
	}

	// chatty goes stale too; its reservation is forgotten, and when it comes
	// back it starts empty. Releasing the forgotten reservation is harmless.
	clock.Advance(20 * time.Second)
	if hosts := s.Hosts(); len(hosts) != 0 {
		t.Fatalf("hosts after all stale: %+v", hosts)
	}
	heartbeat(t, s, HostStatus{HostID: "chatty", MemoryMB: 1024})
	s.Release(old)
	if got := hostInfo(t, s, "chatty"); got.ReservedMB != 0 || got.Reservations != 0 {
		t.Fatalf("rejoined host: %+v", got)
	}
	r := place(t, s, 1024, "")
	s.Release(old) // must not free r's capacity
	if got := hostInfo(t, s, "chatty"); got.ReservedMB != 1024 {
		t.Fatalf("stale release freed a live reservation: %+v (live %s)", got, r.ID)
	}
}

func TestInvalidInput(t *testing.T) {
	s := newService(t, nil)
	for _, st := range []HostStatus{{}, {HostID: "h", MemoryMB: -1}, {HostID: "h", MaxSandboxes: -1}} {
		if err := s.Heartbeat(st); err == nil {
			t.Errorf("heartbeat %+v accepted", st)
		}
	}
	if len(s.Hosts()) != 0 {
		t.Fatal("invalid heartbeat registered a host")
	}
	heartbeat(t, s, HostStatus{HostID: "h", MemoryMB: 1024})
	if _, err := s.Place(context.Background(), Request{MemoryMB: 0}); err == nil || lambdaerr.Is(err, lambdaerr.TooManyRequests) {
		t.Fatalf("zero memory: err = %v, want a non-capacity error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Place(ctx, Request{MemoryMB: 128}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: err = %v", err)
	}
	if _, err := New(Config{StaleAfter: -time.Second}); err == nil {
		t.Fatal("negative StaleAfter accepted")
	}
}

// TestConcurrentPlaceReleaseNeverOverbooks races placements and releases on
// a few small hosts and checks, from the outside, that no host ever holds
// more than its memory or slots.
func TestConcurrentPlaceReleaseNeverOverbooks(t *testing.T) {
	s := newService(t, nil)
	const hosts = 3
	caps := map[string]int{}
	for i := range hosts {
		id := fmt.Sprintf("h%d", i)
		caps[id] = 1024 * (i + 1)
		heartbeat(t, s, HostStatus{HostID: id, MemoryMB: caps[id], MaxSandboxes: 3})
	}
	var mu sync.Mutex
	usedMB := map[string]int{}
	usedSlots := map[string]int{}
	var placed, rejected atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				mem := 128 * (1 + (g+i)%6)
				r, err := s.Place(context.Background(), Request{MemoryMB: mem})
				if err != nil {
					if !lambdaerr.Is(err, lambdaerr.TooManyRequests) {
						errs <- err
						return
					}
					rejected.Add(1)
					continue
				}
				placed.Add(1)
				mu.Lock()
				usedMB[r.HostID] += r.MemoryMB
				usedSlots[r.HostID]++
				over := usedMB[r.HostID] > caps[r.HostID] || usedSlots[r.HostID] > 3
				mu.Unlock()
				if over {
					errs <- fmt.Errorf("host %s overbooked", r.HostID)
					return
				}
				mu.Lock()
				usedMB[r.HostID] -= r.MemoryMB
				usedSlots[r.HostID]--
				mu.Unlock()
				s.Release(r)
				if i%50 == 0 { // heartbeats race with placement too
					_ = s.Heartbeat(HostStatus{HostID: r.HostID, MemoryMB: caps[r.HostID], MaxSandboxes: 3})
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if placed.Load() == 0 {
		t.Fatal("nothing was placed")
	}
	for _, h := range s.Hosts() {
		if h.ReservedMB != 0 || h.Reservations != 0 {
			t.Fatalf("host %s still has reservations after all releases: %+v", h.HostID, h)
		}
	}
	t.Logf("placed %d, rejected %d", placed.Load(), rejected.Load())
}
