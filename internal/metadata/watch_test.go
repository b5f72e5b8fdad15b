package metadata

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/polltest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cutProxy forwards TCP connections to a NATS server until cut, which
// closes them all and refuses new ones until restore: a network failure
// between one client and the server.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // guards cut and conns
	cut   bool
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go func() { _, _ = io.Copy(c, s); c.Close() }()
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestWatchFailureFallsBack cuts one store's connection: from the moment
// the store knows, it must not answer from its cache (a write it cannot
// see happens meanwhile); once reconnected it replays and answers again.
func TestWatchFailureFallsBack(t *testing.T) {
	ctx := context.Background()
	b := startTestBackbone(t)
	other, _ := newCountedStore(t, b.JetStream(), true)
	proxy := newCutProxy(t, b.ClientURL()[len("nats://"):])
	nc, err := nats.Connect("nats://"+proxy.ln.Addr().String(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newCountedStore(t, js, true)
	waitCurrent(t, s)
	const acct = "111111111111"
	if err := other.Create(ctx, fn(acct, "cut")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	polltest.Until(t, 10*time.Second, "the store to see the function", func() bool {
		_, err := s.Get(ctx, acct, "cut", LatestVersion)
		return err == nil
	})

	proxy.setCut(true)
	polltest.Until(t, 10*time.Second, "the store to notice the lost connection", func() bool { return !s.cache.isCurrent() })
	m, err := other.Modify(ctx, acct, "cut", LatestVersion, func(f *Function) error { f.Description = "new"; return nil })
	if err != nil {
		t.Fatalf("Modify: %v", err)
	}
	// Disconnected, the store can only fail or (had the KV answered) give
	// the new value; its cached old value is known stale.
	gctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	got, err := s.Get(gctx, acct, "cut", LatestVersion)
	cancel()
	if err == nil && got.Description != "new" {
		t.Fatalf("Get while disconnected served the stale cached value %+v", got)
	}
	if err == nil {
		t.Fatal("Get while disconnected succeeded; the proxy did not cut the connection")
	}

	proxy.setCut(false)
	polltest.Until(t, 10*time.Second, "the store to reconnect, replay and see the update", func() bool {
		if !s.cache.isCurrent() {
			return false
		}
		got, err := s.Get(ctx, acct, "cut", LatestVersion)
		return err == nil && got.KVRevision == m.KVRevision && got.Description == "new"
	})
}
