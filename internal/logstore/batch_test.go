package logstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/clock/clocktest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// msgsOf is the number of stored messages (batches) of a function.
func msgsOf(t *testing.T, ctx context.Context, s *Store, fn string) uint64 {
	t.Helper()
	subj := subjectPrefix + acct + "." + fn
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// steppingClock steps 1 ms per reading, so entries in one batch have
// distinct, known times.
type steppingClock struct{ *clocktest.Fake }

func (c steppingClock) Now() time.Time {
	c.Advance(time.Millisecond)
	return c.Fake.Now()
}

// appendBatch appends entries from..to-1 of fn with no Flush between, so
// with a long BatchDelay they form one message, then flushes.
func appendBatch(t *testing.T, ctx context.Context, s *Store, fn string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(ctx, acct, fn, fmt.Sprintf("req-%d", i), []byte(fmt.Sprintf("%s log %d\n", fn, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBatchConcurrentAppends(t *testing.T) {
	s, ctx := setup(t, Config{BatchDelay: 5 * time.Millisecond})
	const fns, per = 8, 400
	var wg sync.WaitGroup
	errs := make(chan error, fns)
	for f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := s.Append(ctx, acct, fmt.Sprintf("fn%d", f), fmt.Sprintf("req-%d", i), []byte(fmt.Sprintf("fn%d log %d\n", f, i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs uint64
	for f := range fns {
		fn := fmt.Sprintf("fn%d", f)
		got := readAll(t, ctx, s, acct, fn, ReadOptions{})
		if !reflect.DeepEqual(ids(got), reqs(0, per)) {
			t.Fatalf("%s: read %d entries %q..., want req-0..req-%d in order", fn, len(got), ids(got)[:min(len(got), 5)], per-1)
		}
		for i, e := range got {
			if want := fmt.Sprintf("%s log %d\n", fn, i); string(e.Data) != want {
				t.Fatalf("%s entry %d: data %q, want %q", fn, i, e.Data, want)
			}
			if i > 0 && e.Time.Before(got[i-1].Time) {
				t.Fatalf("%s entry %d: time %v before the previous %v", fn, i, e.Time, got[i-1].Time)
			}
		}
		msgs += msgsOf(t, ctx, s, fn)
	}
	if s.Dropped() != 0 {
		t.Fatalf("%d entries dropped", s.Dropped())
	}
	// Group commit happened: far fewer messages than entries.
	if msgs == 0 || msgs > fns*per/4 {
		t.Fatalf("%d entries stored in %d messages, want batches", fns*per, msgs)
	}
	t.Logf("%d entries in %d messages", fns*per, msgs)
}

// TestBatchTail builds a log whose batches have known sizes and checks
// that Tail counts entries exactly across batch boundaries, alone and with
// Since.
func TestBatchTail(t *testing.T) {
	s, ctx := setup(t, Config{BatchDelay: time.Hour, Clock: steppingClock{clocktest.New(time.Now())}})
	sizes := []int{3, 1, 4, 2, 5}
	total := 0
	for _, n := range sizes {
		appendBatch(t, ctx, s, "fn", total, total+n)
		appendBatch(t, ctx, s, "other", total, total+2) // sparse sequences
		total += n
	}
	if got := msgsOf(t, ctx, s, "fn"); got != uint64(len(sizes)) {
		t.Fatalf("fn stored in %d messages, want %d", got, len(sizes))
	}
	all := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	if !reflect.DeepEqual(ids(all), reqs(0, total)) {
		t.Fatalf("read %q", ids(all))
	}
	for n := 1; n <= total+2; n++ {
		got := readAll(t, ctx, s, acct, "fn", ReadOptions{Tail: n})
		if want := reqs(max(total-n, 0), total); !reflect.DeepEqual(ids(got), want) {
			t.Fatalf("tail %d: read %q, want %q", n, ids(got), want)
		}
	}
	// Since cutting inside a batch (entry 5 is the 2nd of the 3rd batch),
	// with and without Tail.
	cut := all[5].Time
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: cut}); !reflect.DeepEqual(ids(got), reqs(5, total)) {
		t.Fatalf("since entry 5: read %q", ids(got))
	}
	for _, n := range []int{1, 2, 9, 10, 11, 30} {
		got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: cut, Tail: n})
		if want := reqs(max(total-n, 5), total); !reflect.DeepEqual(ids(got), want) {
			t.Fatalf("since entry 5, tail %d: read %q, want %q", n, ids(got), want)
		}
	}
	// Following from a tail inside a batch, then a later batch.
	ch, stop := follow(t, ctx, s, "fn", ReadOptions{Tail: 3})
	expect(t, ch, reqs(total-3, total)...)
	appendBatch(t, ctx, s, "fn", total, total+3)
	expect(t, ch, reqs(total, total+3)...)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestBatchFollow follows without flushing: the writer publishes each
// batch after BatchDelay on its own, and not before (on the fake clock).
func TestBatchFollow(t *testing.T) {
	const delay = 20 * time.Millisecond
	clk := clocktest.New(time.Now())
	s, ctx := setup(t, Config{BatchDelay: delay, Clock: clk})
	ch, stop := follow(t, ctx, s, "fn", ReadOptions{})
	for round := range 3 {
		for i := round * 4; i < round*4+4; i++ {
			if err := s.Append(ctx, acct, "fn", fmt.Sprintf("req-%d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		clk.WaitTimers(t, 1) // the writer waits for BatchDelay
		clk.Advance(delay - time.Nanosecond)
		if n := msgsOf(t, ctx, s, "fn"); n != uint64(round) {
			t.Fatalf("round %d: %d messages before BatchDelay passed, want %d", round, n, round)
		}
		clk.Advance(time.Nanosecond)
		expect(t, ch, reqs(round*4, round*4+4)...)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Each burst waited for its BatchDelay: one message each.
	if n := msgsOf(t, ctx, s, "fn"); n != 3 {
		t.Fatalf("12 entries appended in 3 bursts took %d messages, want 3", n)
	}
}

// publishOld stores an entry as the store did before batching: one
// message, request ID in a header, time from the server.
func publishOld(t *testing.T, ctx context.Context, js jetstream.JetStream, fn, requestID, data string) {
	t.Helper()
	m := nats.NewMsg(subjectPrefix + acct + "." + fn)
	m.Header.Set(HeaderRequestID, requestID)
	m.Data = []byte(data)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func TestOldFormatReadable(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A data dir written by the old store: old-format messages only.
	b, err := backbone.Start(backbone.Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{JS: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		publishOld(t, ctx, b.JetStream(), "fn", fmt.Sprintf("req-%d", i), fmt.Sprintf("fn log %d\n", i))
	}
	s.Close(ctx)
	b.Close()
	// Restarted on the same data dir, new batches follow the old entries.
	b, err = backbone.Start(backbone.Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err = New(Config{JS: b.JetStream(), BatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	appendBatch(t, ctx, s, "fn", 4, 7)
	publishOld(t, ctx, b.JetStream(), "fn", "req-7", "fn log 7\n")
	appendBatch(t, ctx, s, "fn", 8, 10)

	got := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	if !reflect.DeepEqual(ids(got), reqs(0, 10)) {
		t.Fatalf("read %q, want %q", ids(got), reqs(0, 10))
	}
	for i, e := range got {
		if want := fmt.Sprintf("fn log %d\n", i); string(e.Data) != want || e.Time.IsZero() {
			t.Fatalf("entry %d: %q at %v, want %q", i, e.Data, e.Time, want)
		}
	}
	for n := 1; n <= 11; n++ {
		if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Tail: n}); !reflect.DeepEqual(ids(got), reqs(max(10-n, 0), 10)) {
			t.Fatalf("tail %d over old and new messages: read %q", n, ids(got))
		}
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: got[3].Time}); len(got) < 7 || !reflect.DeepEqual(ids(got)[len(got)-7:], reqs(3, 10)) {
		t.Fatalf("since old entry 3: read %q", ids(got))
	}
}

func TestUnreadableMessagesSkipped(t *testing.T) {
	s, ctx := setup(t, Config{BatchDelay: time.Hour})
	appendBatch(t, ctx, s, "fn", 0, 2)
	js := s.cfg.JS
	subj := subjectPrefix + acct + "." + "fn"
	future := nats.NewMsg(subj)
	future.Header.Set(HeaderFormat, "batch9")
	future.Data = []byte("whatever a later version writes")
	if _, err := js.PublishMsg(ctx, future); err != nil {
		t.Fatal(err)
	}
	// A batch whose second frame is cut short: the first entry is kept.
	bad := nats.NewMsg(subj)
	bad.Header.Set(HeaderFormat, formatBatch1)
	bad.Header.Set(HeaderEntries, "2")
	frames := appendFrame(nil, time.Now(), "req-2", []byte("fn log 2\n"))
	frames = appendFrame(frames, time.Now(), "req-x", []byte("lost"))
	bad.Data = frames[:len(frames)-2]
	if _, err := js.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, ctx, s, "fn", 3, 5)
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(0, 5)) {
		t.Fatalf("read %q, want %q", ids(got), reqs(0, 5))
	}
}

func TestCloseDrains(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// BatchDelay of an hour: nothing is published unless Close drains it.
	s, err := New(Config{JS: b.JetStream(), BatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := s.Append(ctx, acct, fmt.Sprintf("fn%d", i%3), fmt.Sprintf("req-%d", i/3), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, acct, "fn0", "late", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	r, err := New(Config{JS: b.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	for f := range 3 {
		if got := readAll(t, ctx, r, acct, fmt.Sprintf("fn%d", f), ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(0, 100)) {
			t.Fatalf("fn%d after Close: read %d entries %q...", f, len(got), ids(got)[:min(5, len(got))])
		}
	}
	if s.Dropped() != 0 {
		t.Fatalf("%d dropped", s.Dropped())
	}
}

// TestStallDropsAndRecovers runs on the fake clock: an Append with no
// room waits exactly StallWait, however loaded the machine.
func TestStallDropsAndRecovers(t *testing.T) {
	const stall = time.Second
	clk := clocktest.New(time.Now())
	s, ctx := setup(t, Config{BatchDelay: time.Hour, MaxPending: 4, StallWait: stall, Clock: clk})
	for i := range 4 {
		if err := s.Append(ctx, acct, "fn", fmt.Sprintf("req-%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	stalled := make(chan error, 1)
	go func() { stalled <- s.Append(ctx, acct, "fn", "req-x", []byte("x")) }()
	clk.WaitTimers(t, 2) // the writer's BatchDelay and the fifth Append's StallWait
	clk.Advance(stall - time.Nanosecond)
	select {
	case err := <-stalled:
		t.Fatalf("fifth Append with 4 pending returned %v before StallWait", err)
	default:
	}
	clk.Advance(time.Nanosecond)
	if err := <-stalled; !errors.Is(err, ErrStalled) {
		t.Fatalf("fifth Append with 4 pending: %v, want ErrStalled", err)
	}
	if s.Dropped() != 1 {
		t.Fatalf("Dropped %d, want 1", s.Dropped())
	}
	// A stalled Append proceeds as soon as the pending batch is stored.
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, acct, "fn", "req-4", []byte("x")) }()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Append after room was made: %v", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(0, 5)) {
		t.Fatalf("read %q", ids(got))
	}
}

func TestBatchSizeBounded(t *testing.T) {
	s, ctx := setup(t, Config{BatchDelay: time.Hour, MaxEntryBytes: 1024})
	big := strings.Repeat("y", 2000) // truncated to 1024
	for i := range 50 {
		if err := s.Append(ctx, acct, "fn", fmt.Sprintf("req-%d", i), []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Dropped() != 0 {
		t.Fatalf("%d entries dropped (a batch above the stream's max message size?)", s.Dropped())
	}
	got := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	if !reflect.DeepEqual(ids(got), reqs(0, 50)) {
		t.Fatalf("read %q", ids(got))
	}
	for _, e := range got {
		if len(e.Data) > 1024 || !strings.Contains(string(e.Data), "truncated") {
			t.Fatalf("entry %s: %d bytes, want truncated to 1024", e.RequestID, len(e.Data))
		}
	}
	// Batches of at most 1024+2048 payload bytes: 3 such entries each at most.
	if n := msgsOf(t, ctx, s, "fn"); n < 50/3 {
		t.Fatalf("50 entries of 1 KiB in %d messages", n)
	}
}

// TestRetentionCountsBatches: MaxMsgsPerSubject keeps whole batches.
func TestRetentionCountsBatches(t *testing.T) {
	s, ctx := setup(t, Config{MaxMsgsPerSubject: 2, BatchDelay: time.Hour})
	appendBatch(t, ctx, s, "fn", 0, 3)
	appendBatch(t, ctx, s, "fn", 3, 7)
	appendBatch(t, ctx, s, "fn", 7, 9)
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(3, 9)) {
		t.Fatalf("read %q, want the last 2 batches %q", ids(got), reqs(3, 9))
	}
}
