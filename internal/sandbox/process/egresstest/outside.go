// Package egresstest builds a fake "internet" for tests of sandbox egress:
// a network namespace of the test's own, joined to the host by a veth
// pair, with a TCP listener inside. Tests point the driver's egress
// (EgressConfig.Interface) at the host end and check what reaches the
// listener, without ever touching a real network.
package egresstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Outside is a network namespace standing for the outside world.
type Outside struct {
	// NS is the namespace's name (ip netns), HostIface the host end of
	// the link to it.
	NS, HostIface string
	// Addr is the namespace's address, HostAddr the host end's.
	Addr, HostAddr netip.Addr
	// Extra are more addresses of the namespace (say 169.254.169.254),
	// routed to it from the host.
	Extra []netip.Addr
	// Listener accepts TCP connections on every address of the
	// namespace; Port is its port.
	Listener net.Listener
	Port     int

	mu    sync.Mutex // guards conns
	conns []Conn     // accepted so far
}

// Conn is one accepted connection: who called which address.
type Conn struct{ Remote, Local netip.AddrPort }

// lockPath serialises egress tests across processes: they use fixed
// addresses, routes, nftables tables and link names, and `go test` may
// run two packages' (or two engineers') tests at once.
const lockPath = "/run/flint-egresstest.lock"

// lockWait bounds the wait for another process's egress test.
const lockWait = 5 * time.Minute

// Lock holds a host-wide lock until the test ends: egress tests of every
// package and process run one at a time. New takes it itself.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatalf("egress test lock: %v", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("egress test lock %s (waited up to %v): %v", lockPath, lockWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// New takes Lock, creates the namespace on subnet (a /24 from TEST-NET,
// e.g. 198.51.100.0/24: .1 inside, .2 on the host) with the extra
// addresses (each routed from the host to the namespace), starts the
// listener, and removes everything in t.Cleanup. It skips the test when
// ip or network namespaces are unavailable.
func New(t testing.TB, subnet netip.Prefix, extra ...netip.Addr) *Outside {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("egress tests need root (network namespaces, veth, nftables)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("egress tests need ip (Debian package iproute2): %v", err)
	}
	Lock(t)
	tag := make([]byte, 3)
	rand.Read(tag)
	o := &Outside{
		NS:        "flint-outside-" + hex.EncodeToString(tag),
		HostIface: "fout" + hex.EncodeToString(tag),
		Addr:      subnet.Addr().Next(),
		HostAddr:  subnet.Addr().Next().Next(),
		Extra:     extra,
	}
	if err := ip("netns", "add", o.NS); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if o.Listener != nil {
			o.Listener.Close()
		}
		if err := ip("netns", "delete", o.NS); err != nil {
			t.Errorf("remove test namespace: %v", err)
		}
		// The pair dies with the namespace; make sure of it.
		ip("link", "delete", o.HostIface)
	})
	bits := subnet.Bits()
	for _, args := range [][]string{
		{"link", "add", o.HostIface, "type", "veth", "peer", "name", "eth0", "netns", o.NS},
		{"address", "add", fmt.Sprintf("%s/%d", o.HostAddr, bits), "dev", o.HostIface},
		{"link", "set", o.HostIface, "up"},
		{"-n", o.NS, "address", "add", fmt.Sprintf("%s/%d", o.Addr, bits), "dev", "eth0"},
		{"-n", o.NS, "link", "set", "eth0", "up"},
		{"-n", o.NS, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range extra {
		// Host routes to the namespace; they go with the veth.
		if err := ip("-n", o.NS, "address", "add", a.String()+"/32", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := ip("route", "add", a.String()+"/32", "via", o.Addr.String(), "dev", o.HostIface); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := listenIn(o.NS, "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener = ln
	o.Port = ln.Addr().(*net.TCPAddr).Port
	go o.accept()
	return o
}

// Target is host:port of the listener on a (Addr or one of Extra).
func (o *Outside) Target(a netip.Addr) string { return netip.AddrPortFrom(a, uint16(o.Port)).String() }

// Conns returns the connections accepted so far.
func (o *Outside) Conns() []Conn {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Conn(nil), o.conns...)
}

func (o *Outside) accept() {
	for {
		c, err := o.Listener.Accept()
		if err != nil {
			return
		}
		r, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		l, _ := netip.ParseAddrPort(c.LocalAddr().String())
		o.mu.Lock()
		o.conns = append(o.conns, Conn{Remote: r, Local: l})
		o.mu.Unlock()
		c.Close()
	}
}

// listenIn opens a TCP listener inside network namespace ns from a thread
// that joins it and comes back; the socket stays in ns.
func listenIn(ns, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		ln, lerr := net.Listen("tcp4", addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: Go discards it when this
			// goroutine ends, so no other goroutine runs in ns.
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: fmt.Errorf("setns back: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln, lerr}
	}()
	r := <-ch
	return r.ln, r.err
}

func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HostCanary listens on the host at addr (with IP_FREEBIND, so the address
// may not exist yet) and counts the connections it accepts: a sandbox must
// never reach it. It closes with t's cleanup.
func HostCanary(t testing.TB, addr string) (net.Listener, *atomic.Int64) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln, n
}

// TableExists reports whether the host has the nftables table inet name.
func TableExists(t testing.TB, name string) bool {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return true
		}
	}
	return false
}
