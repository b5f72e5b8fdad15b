// Package outputtest provides a sink for the output of processes and
// sandboxes under test that tests can read while it is still being
// written. It is meant for tests only.
package outputtest

import (
	"bytes"
	"sync"
)

// Buffer collects bytes written to it. The zero value is ready to use;
// Write and String are safe to call concurrently.
type Buffer struct {
	mu sync.Mutex   // guards b
	b  bytes.Buffer // everything written so far
}

// Write appends p; it never fails.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
