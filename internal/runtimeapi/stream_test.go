package runtimeapi

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/invocation"
)

// chanStream records a streamed response and signals each chunk.
type chanStream struct {
	mu          sync.Mutex
	contentType string
	chunks      []string
	got         chan string
}

func (c *chanStream) Start(ct string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.contentType = ct
	return nil
}

func (c *chanStream) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.chunks = append(c.chunks, string(p))
	c.mu.Unlock()
	c.got <- string(p)
	return len(p), nil
}

// streamingRuntime plays a runtime that takes one event and streams its
// response through pw (chunked, with trailers), as Node's and
// aws-lambda-go's streaming runtimes do.
func streamingRuntime(t *testing.T, base string, trailer http.Header) (pw *io.PipeWriter, answered chan int) {
	t.Helper()
	resp, err := http.Get(base + pathPrefix + "invocation/next")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get(HeaderRequestID)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, base+pathPrefix+"invocation/"+id+"/response", pr)
	req.Header.Set(HeaderResponseMode, "streaming")
	req.Header.Set("Content-Type", "text/plain")
	req.Trailer = trailer
	answered = make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	return pw, answered
}

func TestDispatchStreamPassesChunksOnAsTheyArrive(t *testing.T) {
	srv := New(Config{FunctionARN: testARN})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	sink := &chanStream{got: make(chan string, 8)}
	type result struct {
		out Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := srv.DispatchStream(context.Background(), invocation.Request{RequestID: "r1", Payload: []byte(`{}`)}, time.Now().Add(time.Minute), sink)
		done <- result{out, err}
	}()
	pw, answered := streamingRuntime(t, hs.URL, nil)
	io.WriteString(pw, "first")
	// The runtime sends its second chunk only once the first reached the
	// caller: a buffering server would deadlock here.
	select {
	case c := <-sink.got:
		if c != "first" {
			t.Fatalf("first chunk %q", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the first chunk did not reach the stream before the response ended")
	}
	io.WriteString(pw, "second")
	pw.Close()
	r := <-done
	if r.err != nil || r.out.Err != nil || len(r.out.Payload) != 0 {
		t.Fatalf("outcome %+v %v", r.out, r.err)
	}
	if got := strings.Join(sink.chunks, ""); got != "firstsecond" || sink.contentType != "text/plain" {
		t.Errorf("stream %q content type %q", got, sink.contentType)
	}
	if st := <-answered; st != http.StatusAccepted {
		t.Errorf("runtime got %d", st)
	}
}

func TestDispatchStreamErrorTrailersAndLimit(t *testing.T) {
	srv := New(Config{FunctionARN: testARN, MaxStreamBytes: 100})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()

	sink := &chanStream{got: make(chan string, 64)}
	done := make(chan Outcome, 1)
	go func() {
		out, _ := srv.DispatchStream(context.Background(), invocation.Request{RequestID: "r1"}, time.Now().Add(time.Minute), sink)
		done <- out
	}()
	trailer := http.Header{HeaderErrorType: nil, trailerErrorBody: nil}
	pw, _ := streamingRuntime(t, hs.URL, trailer)
	io.WriteString(pw, "partial")
	<-sink.got
	trailer.Set(HeaderErrorType, "TypeError")
	trailer.Set(trailerErrorBody, base64.StdEncoding.EncodeToString([]byte(`{"errorType":"TypeError","errorMessage":"late boom"}`)))
	pw.Close()
	out := <-done
	if out.Err == nil || out.Err.ErrorType != "TypeError" || out.Err.ErrorMessage != "late boom" {
		t.Errorf("error trailers: %+v", out)
	}

	go func() {
		out, _ := srv.DispatchStream(context.Background(), invocation.Request{RequestID: "r2"}, time.Now().Add(time.Minute), sink)
		done <- out
	}()
	pw, answered := streamingRuntime(t, hs.URL, nil)
	go func() {
		for range 10 {
			if _, err := io.WriteString(pw, strings.Repeat("x", 30)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	out = <-done
	if out.Err == nil || out.Err.ErrorType != ErrorTypeResponseSizeTooLarge {
		t.Errorf("over MaxStreamBytes: %+v", out)
	}
	if st := <-answered; st != http.StatusRequestEntityTooLarge {
		t.Errorf("runtime got %d, want 413", st)
	}
}
