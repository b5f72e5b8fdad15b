package logstore

import (
	"context"
	"strconv"
	"time"

	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The group commit: Append encodes each entry into its function's open
// batch (under Store.mu); the writer goroutine wakes on the first entry,
// lets more gather for BatchDelay (less when a Flush waits or a batch is
// full), takes every batch and publishes each as one message without
// waiting for acknowledgements. The server acknowledges a message after
// its fsync; the ack (or error) handler releases the message's entries
// from the pending count, making room for stalled Appends.
//
//	Append ──▶ open[subject] ──(full)──▶ full ──┐
//	                  └──────────────────────────┴─▶ writer ──▶ PublishMsgAsync ──▶ ack/err ──▶ settle

// batch is the entries of one function gathered for one message.
type batch struct {
	subject string
	buf     []byte // frames, see batch.go
	n       int    // entries
}

// signal wakes the receiver of a cap-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// enqueue adds one entry to its subject's batch, first waiting up to
// StallWait (or ctx) for room when too much is pending.
func (s *Store) enqueue(ctx context.Context, subj, requestID string, data []byte) error {
	size := len(requestID) + len(data) + frameOverhead
	var timer *time.Timer
	s.mu.Lock()
	for !s.closed && (s.pendN >= s.cfg.MaxPending || s.pendN > 0 && s.pendBy+size > s.cfg.MaxPendingBytes) {
		space := s.space
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(s.cfg.StallWait)
			defer timer.Stop()
		}
		select {
		case <-space:
		case <-timer.C:
			s.dropped.Add(1)
			return ErrStalled
		case <-ctx.Done():
			s.dropped.Add(1)
			return ctx.Err()
		}
		s.mu.Lock()
	}
	if s.closed {
		s.mu.Unlock()
		if timer != nil { // it was waiting for room: lost to Close
			s.dropped.Add(1)
		}
		return ErrClosed
	}
	b := s.open[subj]
	sealed := false
	if b != nil && len(b.buf)+size > s.batchMax {
		s.full = append(s.full, b)
		b, sealed = nil, true
	}
	if b == nil {
		b = &batch{subject: subj, buf: make([]byte, 0, min(s.batchMax, max(4096, 2*size)))}
		s.open[subj] = b
	}
	before := len(b.buf)
	b.buf = appendFrame(b.buf, s.cfg.Now(), requestID, data)
	b.n++
	s.pendN++
	s.pendBy += len(b.buf) - before
	s.mu.Unlock()
	if sealed {
		signal(s.hurry)
	}
	signal(s.kick)
	return nil
}

// run is the writer goroutine: it publishes batches until Close, then
// publishes what is left and exits.
func (s *Store) run() {
	defer close(s.writerDone)
	for {
		stopping, hurried := false, false
		select {
		case <-s.kick:
		case <-s.hurry:
			hurried = true
		case <-s.stop:
			stopping = true
		}
		if !stopping && !hurried && s.cfg.BatchDelay > 0 && !s.urgent() {
			t := time.NewTimer(s.cfg.BatchDelay)
			select {
			case <-t.C:
			case <-s.hurry:
			case <-s.stop:
				stopping = true
			}
			t.Stop()
		}
		batches, waiters := s.take()
		for _, b := range batches {
			s.publish(b)
		}
		for _, w := range waiters {
			close(w)
		}
		if stopping {
			return
		}
	}
}

// urgent reports whether a Flush waits or a batch is full.
func (s *Store) urgent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters) > 0 || len(s.full) > 0
}

// take removes every queued batch (full ones first, so each subject's
// stay in order) and the Flushes waiting for them.
func (s *Store) take() ([]*batch, []chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.full
	s.full = nil
	for subj, b := range s.open {
		out = append(out, b)
		delete(s.open, subj)
	}
	w := s.waiters
	s.waiters = nil
	return out, w
}

// publish sends one batch asynchronously; settle accounts for it when the
// server answers, or now when it cannot be sent.
func (s *Store) publish(b *batch) {
	m := nats.NewMsg(b.subject)
	m.Header.Set(HeaderFormat, formatBatch1)
	m.Header.Set(HeaderEntries, strconv.Itoa(b.n))
	m.Data = b.buf
	if err := writegate.Check(s.cfg.Gate, writegate.Logs); err != nil {
		s.refused(m, err)
		return
	}
	_, err := s.pub.PublishMsgAsync(m,
		jetstream.WithExpectStream(s.cfg.Stream),
		jetstream.WithStallWait(writerStallWait))
	if err != nil {
		s.settle(m, err)
	}
}

// refused drops a batch the gate refused, warning at most every 30 s.
func (s *Store) refused(m *nats.Msg, err error) {
	now := time.Now().UnixNano()
	if last := s.gateWarn.Load(); now-last > int64(30*time.Second) && s.gateWarn.CompareAndSwap(last, now) {
		s.log.Warn("dropping function logs while the backbone cannot take them", "reason", err, "droppedSoFar", s.dropped.Load())
	}
	n, _ := strconv.Atoi(m.Header.Get(HeaderEntries))
	s.dropped.Add(int64(n))
	s.release(m)
}

// settle releases a published (or unpublishable) batch's entries from
// the pending count; err non-nil means they were lost.
func (s *Store) settle(m *nats.Msg, err error) {
	n, _ := strconv.Atoi(m.Header.Get(HeaderEntries))
	if err != nil {
		s.dropped.Add(int64(n))
		s.log.Warn("function log entries lost", "subject", m.Subject, "entries", n, "err", err)
	}
	s.release(m)
}

// release takes a batch's entries off the pending count.
func (s *Store) release(m *nats.Msg) {
	n, _ := strconv.Atoi(m.Header.Get(HeaderEntries))
	s.mu.Lock()
	s.pendN -= n
	s.pendBy -= len(m.Data) // frames are exactly what enqueue counted
	close(s.space)
	s.space = make(chan struct{})
	s.mu.Unlock()
}
