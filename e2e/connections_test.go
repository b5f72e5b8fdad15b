package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/polltest"
)

// raiseFDLimit lifts this process's open-file limit to at least n (up to
// the hard limit), skipping the test when that is not enough.
func raiseFDLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		lim.Max = n // works as root
	}
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("needs %d open files: %v", n, err)
	}
}

// keepAliveConn sends one request on a new connection and reads the
// answer, leaving the connection open (HTTP/1.1 keep-alive).
func keepAliveConn(addr, path string) (net.Conn, *http.Response, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: flint\r\n\r\n", path)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, resp, nil
}

type connStats struct {
	OpenFDs     int `json:"openFDs"`
	Connections struct {
		Open    int64 `json:"open"`
		Refused int64 `json:"refused"`
	} `json:"connections"`
}

// TestIdleKeepAliveConnectionsClosed: 2,000 idle keep-alive connections
// are closed by the server after --http-idle-timeout, and their fds are
// given back.
func TestIdleKeepAliveConnectionsClosed(t *testing.T) {
	const n = 2000
	raiseFDLimit(t, 3*n)
	s := startServer(t, t.TempDir(), "--http-idle-timeout", "3s")
	var before connStats
	if _, err := httpGetJSON(s.url()+"/flint/v1/stats", &before); err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, resp, err := keepAliveConn(s.addr, "/healthz")
			if err != nil {
				errs <- err
				return
			}
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("healthz: %s", resp.Status)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	lastRequest := time.Now()
	close(errs)
	for err := range errs {
		t.Fatalf("opening keep-alive connections: %v", err)
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var held connStats
	if _, err := httpGetJSON(s.url()+"/flint/v1/stats", &held); err != nil {
		t.Fatal(err)
	}
	if held.Connections.Open < n || held.OpenFDs < before.OpenFDs+n-20 {
		t.Fatalf("with %d idle connections the server reports %d open, %d fds (before: %d fds)", n, held.Connections.Open, held.OpenFDs, before.OpenFDs)
	}
	// Every connection is closed by the server: a read sees EOF.
	var closedAt time.Time
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("connection %d: read %v, want EOF (closed by the server)", i, err)
		}
		closedAt = time.Now()
	}
	var after connStats
	polltest.Check(t, 30*time.Second, "the server to give back the idle connections' fds", func() error {
		if _, err := httpGetJSON(s.url()+"/flint/v1/stats", &after); err != nil {
			return err
		}
		if after.Connections.Open > 5 || after.OpenFDs > before.OpenFDs+20 {
			return fmt.Errorf("%d connections, %d fds still open (before: %d fds)", after.Connections.Open, after.OpenFDs, before.OpenFDs)
		}
		return nil
	})
	t.Logf("IDLE RESULT: %d idle keep-alive connections held %d fds; all closed by %v after the last request (idle timeout 3s); fds %d -> %d -> %d",
		n, held.OpenFDs-before.OpenFDs, closedAt.Sub(lastRequest).Round(time.Millisecond), before.OpenFDs, held.OpenFDs, after.OpenFDs)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestMaxConnections: past --max-connections a new connection is answered
// 429 TooManyRequestsException naming the limit; once connections close,
// requests are served again.
func TestMaxConnections(t *testing.T) {
	const max = 20
	s := startServer(t, t.TempDir(), "--max-connections", fmt.Sprint(max))
	var held []net.Conn
	for range max {
		c, resp, err := keepAliveConn(s.addr, "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("within the limit: %s", resp.Status)
		}
		held = append(held, c)
	}
	c, resp, err := keepAliveConn(s.addr, "/healthz")
	if err != nil {
		t.Fatalf("past the limit: %v, want a 429 answer", err)
	}
	c.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Amzn-ErrorType") != "TooManyRequestsException" {
		t.Errorf("past the limit: %s %v", resp.Status, resp.Header)
	}
	for _, c := range held {
		c.Close()
	}
	polltest.Check(t, 10*time.Second, "the server to serve again after the connections closed", func() error {
		resp, err := http.Get(s.url() + "/flint/v1/stats")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st connStats
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if resp.StatusCode != 200 || st.Connections.Refused < 1 {
			return fmt.Errorf("after closing: %s, %+v", resp.Status, st)
		}
		return nil
	})
}
