package logstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
)

const acct = "123456789012"

func setup(t *testing.T, cfg Config) (*Store, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg.JS = b.JetStream()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, ctx
}

func appendN(t *testing.T, ctx context.Context, s *Store, account, fn string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(ctx, account, fn, fmt.Sprintf("req-%d", i), []byte(fmt.Sprintf("%s log %d\n", fn, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, ctx context.Context, s *Store, account, fn string, opts ReadOptions) []Entry {
	t.Helper()
	var out []Entry
	if err := s.Read(ctx, account, fn, opts, func(e Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.RequestID
	}
	return out
}

func reqs(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("req-%d", i))
	}
	return out
}

func TestAppendReadOrder(t *testing.T) {
	s, ctx := setup(t, Config{})
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); len(got) != 0 {
		t.Fatalf("empty log read %d entries", len(got))
	}
	appendN(t, ctx, s, acct, "fn", 0, 5)
	got := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	if !reflect.DeepEqual(ids(got), reqs(0, 5)) {
		t.Fatalf("read %q, want %q", ids(got), reqs(0, 5))
	}
	for i, e := range got {
		if want := fmt.Sprintf("fn log %d\n", i); string(e.Data) != want {
			t.Errorf("entry %d data %q, want %q", i, e.Data, want)
		}
		if e.Time.IsZero() || i > 0 && e.Time.Before(got[i-1].Time) {
			t.Errorf("entry %d time %v not after %v", i, e.Time, got[max(i-1, 0)].Time)
		}
	}
	if s.Dropped() != 0 {
		t.Errorf("%d appends dropped", s.Dropped())
	}
}

func TestIsolation(t *testing.T) {
	s, ctx := setup(t, Config{})
	// Interleave neighbours whose names share prefixes, and the same name
	// in another account.
	for i := range 4 {
		appendN(t, ctx, s, acct, "fn", i, i+1)
		appendN(t, ctx, s, acct, "fn-2", 100+i, 101+i)
		appendN(t, ctx, s, acct, "fn_x", 200+i, 201+i)
		appendN(t, ctx, s, "999999999999", "fn", 300+i, 301+i)
	}
	for _, opts := range []ReadOptions{{}, {Tail: 2}, {Since: time.Now().Add(-time.Hour)}} {
		got := readAll(t, ctx, s, acct, "fn", opts)
		for _, e := range got {
			if !strings.HasPrefix(string(e.Data), "fn log ") {
				t.Fatalf("%+v: foreign entry %q %q", opts, e.RequestID, e.Data)
			}
		}
		want := reqs(0, 4)
		if opts.Tail > 0 {
			want = want[2:]
		}
		if !reflect.DeepEqual(ids(got), want) {
			t.Fatalf("%+v: read %q, want %q", opts, ids(got), want)
		}
	}
}

func TestTail(t *testing.T) {
	s, ctx := setup(t, Config{})
	for i := range 20 { // other functions' entries make the sequences sparse
		appendN(t, ctx, s, acct, "fn", i, i+1)
		appendN(t, ctx, s, acct, "other", i, i+1)
		appendN(t, ctx, s, acct, "other", i, i+1)
	}
	for _, n := range []int{1, 3, 7, 19, 20, 50} {
		got := readAll(t, ctx, s, acct, "fn", ReadOptions{Tail: n})
		want := reqs(max(20-n, 0), 20)
		if !reflect.DeepEqual(ids(got), want) {
			t.Fatalf("tail %d: read %q, want %q", n, ids(got), want)
		}
	}
}

func TestSince(t *testing.T) {
	s, ctx := setup(t, Config{})
	appendN(t, ctx, s, acct, "fn", 0, 6)
	all := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	cut := all[3].Time
	got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: cut})
	for _, e := range got {
		if e.Time.Before(cut) {
			t.Fatalf("entry %s at %v is before since %v", e.RequestID, e.Time, cut)
		}
	}
	// Entries 3..5 are at or after the cut; earlier ones only if they were
	// stored in the same instant.
	if n := len(got); n < 3 || !reflect.DeepEqual(ids(got)[n-3:], reqs(3, 6)) {
		t.Fatalf("since: read %q, want to end with %q", ids(got), reqs(3, 6))
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: cut, Tail: 2}); !reflect.DeepEqual(ids(got), reqs(4, 6)) {
		t.Fatalf("since+tail: read %q, want %q", ids(got), reqs(4, 6))
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: all[5].Time.Add(time.Millisecond)}); len(got) != 0 {
		t.Fatalf("since after the last entry read %q", ids(got))
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{Since: all[5].Time.Add(time.Millisecond), Tail: 3}); len(got) != 0 {
		t.Fatalf("since after the last entry, with tail, read %q", ids(got))
	}
}

// follow starts a following Read and returns its entries channel and a
// function that stops it and returns Read's result.
func follow(t *testing.T, ctx context.Context, s *Store, fn string, opts ReadOptions) (<-chan Entry, func() error) {
	t.Helper()
	opts.Follow = true
	rctx, cancel := context.WithCancel(ctx)
	ch := make(chan Entry, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Read(rctx, acct, fn, opts, func(e Entry) error {
			ch <- e
			return nil
		})
	}()
	return ch, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("following Read did not return after cancel")
		}
	}
}

func expect(t *testing.T, ch <-chan Entry, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case e := <-ch:
			if e.RequestID != w {
				t.Fatalf("got entry %q, want %q", e.RequestID, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no entry %q within 10s", w)
		}
	}
}

func TestFollow(t *testing.T) {
	s, ctx := setup(t, Config{})
	appendN(t, ctx, s, acct, "fn", 0, 2)
	ch, stop := follow(t, ctx, s, "fn", ReadOptions{})
	expect(t, ch, reqs(0, 2)...)
	appendN(t, ctx, s, acct, "other", 0, 1)
	appendN(t, ctx, s, acct, "fn", 2, 4)
	expect(t, ch, reqs(2, 4)...)
	if err := stop(); err != nil {
		t.Fatalf("Read after cancel: %v, want nil", err)
	}
	if len(ch) != 0 {
		t.Fatalf("extra entry %q", (<-ch).RequestID)
	}
}

func TestFollowTail(t *testing.T) {
	s, ctx := setup(t, Config{})
	appendN(t, ctx, s, acct, "fn", 0, 5)
	ch, stop := follow(t, ctx, s, "fn", ReadOptions{Tail: 1})
	expect(t, ch, "req-4")
	appendN(t, ctx, s, acct, "fn", 5, 6)
	expect(t, ch, "req-5")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Following an empty log waits for the first entry.
	ch, stop = follow(t, ctx, s, "empty", ReadOptions{Tail: 3})
	appendN(t, ctx, s, acct, "empty", 0, 1)
	expect(t, ch, "req-0")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestPurge(t *testing.T) {
	s, ctx := setup(t, Config{})
	appendN(t, ctx, s, acct, "fn", 0, 3)
	appendN(t, ctx, s, acct, "keep", 0, 3)
	if err := s.Purge(ctx, acct, "fn"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); len(got) != 0 {
		t.Fatalf("after purge read %q", ids(got))
	}
	if got := readAll(t, ctx, s, acct, "keep", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(0, 3)) {
		t.Fatalf("purge of fn touched keep: %q", ids(got))
	}
	appendN(t, ctx, s, acct, "fn", 3, 4)
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(3, 4)) {
		t.Fatalf("append after purge: read %q", ids(got))
	}
}

func TestRetentionPerFunction(t *testing.T) {
	// The limit counts messages; a Flush after each append makes each
	// entry its own message (batch_test.go covers batches).
	s, ctx := setup(t, Config{MaxMsgsPerSubject: 5})
	for i := range 12 {
		appendN(t, ctx, s, acct, "fn", i, i+1)
	}
	appendN(t, ctx, s, acct, "small", 0, 2)
	if got := readAll(t, ctx, s, acct, "fn", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(7, 12)) {
		t.Fatalf("read %q, want the last 5 %q", ids(got), reqs(7, 12))
	}
	if got := readAll(t, ctx, s, acct, "small", ReadOptions{}); !reflect.DeepEqual(ids(got), reqs(0, 2)) {
		t.Fatalf("another function lost entries to fn's limit: %q", ids(got))
	}
}

func TestTruncate(t *testing.T) {
	s, ctx := setup(t, Config{MaxEntryBytes: 2048})
	big := "START RequestId: r\n" + strings.Repeat("x", 100000) + "\nEND RequestId: r\nREPORT RequestId: r\n"
	if err := s.Append(ctx, acct, "fn", "r", []byte(big)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, ctx, s, acct, "fn", ReadOptions{})
	if len(got) != 1 {
		t.Fatalf("read %d entries", len(got))
	}
	d := string(got[0].Data)
	if len(d) > 2048 || !strings.HasPrefix(d, "START RequestId: r\n") || !strings.HasSuffix(d, "REPORT RequestId: r\n") || !strings.Contains(d, "truncated") {
		t.Fatalf("truncated entry (%d bytes) lost its head, tail or marker: %.80q...", len(d), d)
	}
}

func TestBadNamesAndCallbackError(t *testing.T) {
	s, ctx := setup(t, Config{})
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "fn\n"} {
		if err := s.Append(ctx, acct, bad, "r", nil); err == nil {
			t.Errorf("Append accepted function %q", bad)
		}
		if err := s.Read(ctx, bad, "fn", ReadOptions{}, func(Entry) error { return nil }); err == nil {
			t.Errorf("Read accepted account %q", bad)
		}
		if err := s.Purge(ctx, acct, bad); err == nil {
			t.Errorf("Purge accepted function %q", bad)
		}
	}
	appendN(t, ctx, s, acct, "fn", 0, 3)
	sentinel := errors.New("enough")
	n := 0
	err := s.Read(ctx, acct, "fn", ReadOptions{}, func(Entry) error {
		n++
		return sentinel
	})
	if err != sentinel || n != 1 {
		t.Fatalf("Read returned %v after %d entries, want the callback's error after 1", err, n)
	}
}
