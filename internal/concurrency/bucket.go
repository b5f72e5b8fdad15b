package concurrency

import (
	"errors"
	"sync"
	"time"
)

// maxBuckets bounds the Bucket's map: past it, full buckets (which are
// indistinguishable from absent ones) are dropped.
const maxBuckets = 4096

// Bucket is a token bucket per key (a function): Allow takes one token,
// tokens refill at Rate per second up to Burst. Lambda lets each function
// scale out by 1000 execution environments every 10 seconds; the Worker
// Manager uses a Bucket with Burst 1000 and Rate 100 for new sandboxes.
// Safe for concurrent use.
type Bucket struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*tokens // guarded by mu
}

type tokens struct {
	n    float64
	last time.Time
}

// NewBucket returns a Bucket; now is the clock (nil for time.Now).
func NewBucket(ratePerSecond float64, burst int, now func() time.Time) (*Bucket, error) {
	if ratePerSecond <= 0 || burst <= 0 {
		return nil, errors.New("concurrency: bucket rate and burst must be positive")
	}
	if now == nil {
		now = time.Now
	}
	return &Bucket{rate: ratePerSecond, burst: float64(burst), now: now, buckets: map[string]*tokens{}}, nil
}

// Allow takes a token for key and reports whether there was one.
func (b *Bucket) Allow(key string) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.buckets[key]
	if t == nil {
		if len(b.buckets) >= maxBuckets {
			b.dropFullLocked(now)
		}
		t = &tokens{n: b.burst, last: now}
		b.buckets[key] = t
	}
	b.refill(t, now)
	if t.n < 1 {
		return false
	}
	t.n--
	return true
}

func (b *Bucket) refill(t *tokens, now time.Time) {
	if el := now.Sub(t.last).Seconds(); el > 0 {
		t.n = min(b.burst, t.n+el*b.rate)
		t.last = now
	}
}

func (b *Bucket) dropFullLocked(now time.Time) {
	for k, t := range b.buckets {
		b.refill(t, now)
		if t.n >= b.burst {
			delete(b.buckets, k)
		}
	}
}

// Provisioned concurrency statuses, as Lambda names them.
const (
	StatusInProgress = "IN_PROGRESS"
	StatusReady      = "READY"
	StatusFailed     = "FAILED"
)

// ProvisionedStatus is the state of one provisioned concurrency
// configuration (one function version).
type ProvisionedStatus struct {
	Requested int
	// Allocated sandboxes are created and initialised; Available ones are
	// allocated and idle right now.
	Allocated, Available int
	Status               string // StatusInProgress, StatusReady or StatusFailed
	StatusReason         string // why it failed
}
