package outputtest

import (
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrent: writers and a reader running at once lose no
// bytes and tear no write (run with -race to check the locking).
func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	const writers, lines = 4, 200
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
				if s := b.String(); len(s)%len("line\n") != 0 {
					t.Errorf("read a torn write: %d bytes", len(s))
					return
				}
			}
		}
	}()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range lines {
				if n, err := b.Write([]byte("line\n")); n != 5 || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readerDone
	if got := strings.Count(b.String(), "line\n"); got != writers*lines {
		t.Fatalf("%d lines collected, want %d", got, writers*lines)
	}
}
