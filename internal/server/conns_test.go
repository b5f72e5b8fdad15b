package server

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCapListener: past the cap a connection gets a 429 answer it can
// read; a closed connection gives its slot back.
func TestCapListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := newCapListener(ln, 2, slog.New(slog.DiscardHandler))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(cl)
	defer srv.Close()
	get := func() (net.Conn, *http.Response) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		resp.Header.Set("X-Body", string(body))
		return c, resp
	}
	a, ra := get()
	b, rb := get()
	if ra.StatusCode != 200 || rb.StatusCode != 200 {
		t.Fatalf("within the cap: %s, %s", ra.Status, rb.Status)
	}
	c, rc := get()
	c.Close()
	if rc.StatusCode != http.StatusTooManyRequests || !strings.Contains(rc.Header.Get("X-Body"), "--max-connections") {
		t.Fatalf("past the cap: %s %q", rc.Status, rc.Header.Get("X-Body"))
	}
	a.Close()
	b.Close()
	// The server notices the closes on its next read.
	for deadline := time.Now().Add(10 * time.Second); cl.Open() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted open after closing them", cl.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, rd := get()
	defer d.Close()
	if rd.StatusCode != 200 || cl.Refused() != 1 {
		t.Fatalf("after closing: %s, refused %d", rd.Status, cl.Refused())
	}
}
