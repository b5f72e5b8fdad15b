package asyncq

import (
	"testing"
	"time"
)

// Either throttle back-off bound may be given alone (flint server's
// --async-throttle-backoff-min/-max); the other is filled so that
// Min <= Max.
func TestThrottleBackoffDefaults(t *testing.T) {
	cases := []struct {
		min, max         time.Duration
		wantMin, wantMax time.Duration
	}{
		{0, 0, time.Second, 5 * time.Minute},
		{0, 2 * time.Second, time.Second, 2 * time.Second},
		{0, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond},
		{10 * time.Minute, 0, 10 * time.Minute, 10 * time.Minute},
		{2 * time.Second, 0, 2 * time.Second, 5 * time.Minute},
	}
	for _, tc := range cases {
		c := Config{JetStream: nil, ThrottleBackoffMin: tc.min, ThrottleBackoffMax: tc.max}
		c.setDefaults()
		if c.ThrottleBackoffMin != tc.wantMin || c.ThrottleBackoffMax != tc.wantMax {
			t.Errorf("min %v max %v: got %v..%v, want %v..%v", tc.min, tc.max, c.ThrottleBackoffMin, c.ThrottleBackoffMax, tc.wantMin, tc.wantMax)
		}
		if c.ThrottleBackoffMin > c.ThrottleBackoffMax {
			t.Errorf("min %v max %v: defaults give min > max", tc.min, tc.max)
		}
	}
}
