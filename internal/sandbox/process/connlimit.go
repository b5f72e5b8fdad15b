package process

import (
	"net"
	"sync"
)

// limitListener bounds how many connections the host serves from one
// sandbox at a time. The Runtime API socket is the only way out of a
// sandbox, and every connection on it costs the host process a descriptor
// and a goroutine: without a bound one function could exhaust the host's
// descriptors for every other sandbox. A connection over the limit is
// accepted and closed at once (the runtime sees a reset, not a hang).
//
// Safe for concurrent use; mu guards active.
type limitListener struct {
	net.Listener
	max    int
	mu     sync.Mutex
	active int
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, max: max}
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		ok := l.active < l.max
		if ok {
			l.active++
		}
		l.mu.Unlock()
		if ok {
			return &limitedConn{Conn: c, l: l}, nil
		}
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			tc.SetLinger(0) // reset: no TIME_WAIT left on the host
		}
		c.Close()
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

// limitedConn gives its slot back on the first Close.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
