package frontend

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

// TestNewUUID checks request and revision IDs are random version-4 UUIDs in
// the canonical form (Lambda's request IDs look the same).
func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, err := newUUID()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("%q is not a version-4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%q twice", id)
		}
		seen[id] = true
	}
}

// TestHeaderKeysCanonical guards the invoke path's direct header map
// writes: a key that is not canonical would be sent as a second header.
func TestHeaderKeysCanonical(t *testing.T) {
	for _, k := range []string{headerRequestID, headerExecutedVersion, headerFunctionError, headerLogResult} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
	}
}

// TestNewTraceID checks the X-Ray trace header an invocation gets when it
// came without one: Root=1-<epoch seconds, hex>-<96 random bits>;Sampled=0.
func TestNewTraceID(t *testing.T) {
	h := &Handler{cfg: Config{Clock: func() time.Time { return time.Unix(0x5f0ab1c2, 0) }}}
	re := regexp.MustCompile(`^Root=1-5f0ab1c2-[0-9a-f]{24};Sampled=0$`)
	a, b := h.newTraceID(), h.newTraceID()
	if !re.MatchString(a) || !re.MatchString(b) || a == b {
		t.Fatalf("trace IDs %q, %q", a, b)
	}
}
