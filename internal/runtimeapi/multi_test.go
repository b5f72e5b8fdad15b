package runtimeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

// rawNext takes one event as a runtime would and returns its request id.
func rawNext(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + pathPrefix + "invocation/next")
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get(HeaderRequestID)
}

// rawAnswer posts body as the response of id and returns the status.
func rawAnswer(t *testing.T, base, id, body string) int {
	t.Helper()
	resp, err := http.Post(base+pathPrefix+"invocation/"+id+"/response", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMultiConcurrentDispatch: with MaxConcurrency 3 three invocations are
// delivered to three pollers at once, answered in any order on their own
// request-id routes; a fourth Dispatch finds every slot taken.
func TestMultiConcurrentDispatch(t *testing.T) {
	srv := New(Config{FunctionARN: testARN, MaxConcurrency: 3})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()

	ids := make(chan string, 3)
	for range 3 {
		go func() { ids <- rawNext(t, hs.URL) }()
	}
	outs := make([]Outcome, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = srv.Dispatch(context.Background(),
				invocation.Request{RequestID: fmt.Sprintf("r%d", i), Payload: []byte(`{}`)}, time.Now().Add(time.Minute))
		}()
	}
	got := map[string]bool{}
	for range 3 {
		got[<-ids] = true
	}
	if len(got) != 3 {
		t.Fatalf("the three pollers got %v, want three distinct invocations", got)
	}
	// All three slots are taken: a fourth is refused at once.
	if _, err := srv.Dispatch(context.Background(), invocation.Request{RequestID: "r3"}, time.Now()); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth Dispatch: err = %v, want ErrBusy", err)
	}
	for _, id := range []string{"r2", "r0", "r1"} {
		if st := rawAnswer(t, hs.URL, id, `"`+id+`"`); st != http.StatusAccepted {
			t.Fatalf("answer %s: status %d", id, st)
		}
	}
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || string(outs[i].Payload) != fmt.Sprintf(`"r%d"`, i) {
			t.Errorf("invocation r%d: %s, %v", i, outs[i].Payload, errs[i])
		}
	}
}

// TestMultiConcurrentLateAnswer: an invocation abandoned after delivery
// (timed out) in a multi-concurrent Server gets its late answer accepted
// and dropped (aws-lambda-go would exit on a 400 and take the other
// invocations with it); a single-concurrency Server answers 400.
func TestMultiConcurrentLateAnswer(t *testing.T) {
	for _, tc := range []struct {
		slots int
		want  int
	}{{1, http.StatusBadRequest}, {2, http.StatusAccepted}} {
		t.Run(fmt.Sprint(tc.slots), func(t *testing.T) {
			srv := New(Config{FunctionARN: testARN, MaxConcurrency: tc.slots})
			hs := httptest.NewServer(srv)
			defer hs.Close()
			defer srv.Close()
			delivered := make(chan string, 1)
			go func() { delivered <- rawNext(t, hs.URL) }()
			ctx, cancel := context.WithCancelCause(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := srv.Dispatch(ctx, invocation.Request{RequestID: "slow"}, time.Now().Add(time.Second))
				done <- err
			}()
			if id := <-delivered; id != "slow" {
				t.Fatalf("delivered %q", id)
			}
			timedOut := errors.New("timed out")
			cancel(timedOut)
			if err := <-done; !errors.Is(err, timedOut) || errors.Is(err, ErrUndelivered) {
				t.Fatalf("Dispatch: err = %v, want the timeout, delivered", err)
			}
			if st := rawAnswer(t, hs.URL, "slow", `"late"`); st != tc.want {
				t.Fatalf("late answer: status %d, want %d", st, tc.want)
			}
			if st := rawAnswer(t, hs.URL, "slow", `"again"`); st != http.StatusBadRequest {
				t.Fatalf("second late answer: status %d, want 400", st)
			}
		})
	}
}
