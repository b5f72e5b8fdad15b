package server

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// capListener caps the connections open at once. Past the cap a new
// connection is answered with Lambda's TooManyRequestsException (429,
// Retry-After: 1) and closed, so a client sees a clear refusal it knows to
// retry, never a hang in the accept queue.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Int64
	log     *slog.Logger
	warned  atomic.Int64 // unix nanos of the last warning
}

func newCapListener(ln net.Listener, max int, log *slog.Logger) *capListener {
	return &capListener{Listener: ln, max: int64(max), log: log}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); n > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			l.warn()
			go refuseConn(c, l.max)
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

func (l *capListener) warn() {
	now := time.Now().UnixNano()
	if last := l.warned.Load(); now-last > int64(10*time.Second) && l.warned.CompareAndSwap(last, now) {
		l.log.Warn("refusing connections past --max-connections", "max", l.max, "refusedSoFar", l.refused.Load())
	}
}

// Open is the number of connections open now; Refused those refused so far.
func (l *capListener) Open() int64    { return l.open.Load() }
func (l *capListener) Refused() int64 { return l.refused.Load() }

// refuseConn answers one HTTP request with 429 and closes c. It reads
// what the client sent first (briefly) and drains after answering, so the
// close does not reset the connection before the client reads the answer.
func refuseConn(c net.Conn, max int64) {
	defer c.Close()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = c.Read(buf)
	body := fmt.Sprintf(`{"Type":"User","message":"the server has %d connections open, its limit (--max-connections); retry later","Reason":"CallerRateLimitExceeded"}`, max)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nX-Amzn-ErrorType: TooManyRequestsException\r\n"+
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// countedConn gives its slot back once, on Close.
type countedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
