package microvm_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/egress"
	"github.com/flintdev/flint/internal/sandbox/microvm"
	"github.com/flintdev/flint/internal/sandbox/process/egresstest"
)

// probeScript tries a TCP connection to each argument (host:port) and
// prints "<target> ok" or "<target> <error>", then the guest's network
// devices, whether IPv6 is off and the nameserver.
const probeScript = `
import socket, sys
for a in sys.argv[1:]:
    h, p = a.rsplit(":", 1)
    try:
        socket.create_connection((h, int(p)), timeout=3).close(); r = "ok"
    except Exception as e:
        r = type(e).__name__
    print(a, r, flush=True)
print("net", " ".join(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])), flush=True)
print("ipv6-disabled", open("/proc/sys/net/ipv6/conf/all/disable_ipv6").read().strip(), flush=True)
print("resolv", open("/etc/resolv.conf").read().split()[1], flush=True)
print("done", flush=True)
`

// TestEgress: with egress on, a VM (a tap device on the host, virtio-net
// in the guest) reaches a fake internet (a network namespace behind a
// veth pair, package egresstest) through the process driver's nftables
// table; link-local (metadata), private addresses and the host itself
// (its end of the link and of the fake internet) are refused. The tap
// goes when the VM does, the table with Close. TestGuestKernel checks
// that a VM without egress has no network device.
func TestEgress(t *testing.T) {
	if os.Getenv("FLINT_TEST_MICROVM") != "1" {
		t.Skip("FLINT_TEST_MICROVM=1 runs the microVM egress test (a full boot under TCG)")
	}
	metadata := netip.MustParseAddr("169.254.170.2")
	private := netip.MustParseAddr("10.255.255.1")
	out := egresstest.New(t, netip.MustParsePrefix("198.51.100.0/24"), metadata, private)
	const name = "flinttm"
	pool := netip.MustParsePrefix("100.97.2.0/24")
	d := newDriverWith(t, func(c *microvm.Config) {
		c.Egress = &egress.Config{Pool: pool, Interface: out.HostIface, Name: name, Nameservers: []netip.Addr{out.Addr}}
	})
	if !egresstest.TableExists(t, name) {
		t.Fatalf("nftables table inet %s missing after New", name)
	}
	// Control: the host reaches the refused addresses; only the filter
	// keeps the guest from them.
	for _, a := range []netip.Addr{metadata, private} {
		c, err := net.DialTimeout("tcp", out.Target(a), 2*time.Second)
		if err != nil {
			t.Fatalf("control: the host cannot reach %s in the fake internet: %v", a, err)
		}
		c.Close()
	}
	base := 2
	if !polltest.Wait(5*time.Second, func() bool { return len(out.Conns()) >= base }) {
		t.Fatalf("control: the fake internet recorded %d connections, want %d", len(out.Conns()), base)
	}
	// The first link of the pool: gateway .1 (a canary waits there before
	// the tap exists), guest .2.
	gw := pool.Addr().Next()
	gwCanary, gwHits := egresstest.HostCanary(t, netip.AddrPortFrom(gw, 0).String())
	hostEnd, hostEndHits := egresstest.HostCanary(t, netip.AddrPortFrom(out.HostAddr, 0).String())

	allowed := out.Target(out.Addr)
	denied := []string{out.Target(metadata), out.Target(private), gwCanary.Addr().String(), hostEnd.Addr().String()}
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "probe.py"), []byte(probeScript), 0o644); err != nil {
		t.Fatal(err)
	}
	var o outputtest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	sb, err := d.Create(ctx, sandbox.Spec{
		ID: "egress-1", CodeDir: code,
		Command: append([]string{"/usr/bin/python3", "/var/task/probe.py", allowed}, denied...),
		Env:     []string{"PATH=/usr/bin:/bin"}, RuntimeAPI: http404{}, Output: &o, MemoryMB: 128,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created in %v (a full boot: egress VMs are not restored)", time.Since(t0))
	defer sb.Destroy(context.Background())
	addr, gotGw, ok := sb.(*microvm.Sandbox).EgressAddr()
	if !ok || gotGw != gw {
		t.Fatalf("EgressAddr = %s via %s, %v; want a link via %s", addr, gotGw, ok, gw)
	}
	if !polltest.Wait(time.Minute, func() bool {
		_ = sb.SyncOutput(context.Background())
		return strings.Contains(o.String(), "done\n")
	}) {
		t.Fatalf("output %q", o.String())
	}
	r := map[string]string{}
	for _, l := range strings.Split(o.String(), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			r[k] = v
		}
	}
	t.Logf("guest %s: %v", addr, r)
	if r[allowed] != "ok" {
		t.Errorf("egress to the fake internet %s: %q", allowed, r[allowed])
	}
	for _, a := range denied {
		if r[a] == "ok" || r[a] == "" {
			t.Errorf("the guest reached %s: %q", a, r[a])
		}
	}
	if r["net"] != "eth0 lo" {
		t.Errorf("guest network devices %q, want eth0 lo", r["net"])
	}
	if r["resolv"] != out.Addr.String() {
		t.Errorf("resolv.conf nameserver %q, want %s", r["resolv"], out.Addr)
	}
	if r["ipv6-disabled"] != "1" {
		t.Errorf("IPv6 in the guest: disable_ipv6 = %q", r["ipv6-disabled"])
	}
	conns := out.Conns()[base:]
	if len(conns) != 1 || conns[0].Local.Addr() != out.Addr || conns[0].Remote.Addr() != out.HostAddr {
		t.Errorf("fake internet saw %v, want one connection to %s from the host end %s (masqueraded)", conns, out.Addr, out.HostAddr)
	}
	for what, n := range map[string]*atomic.Int64{"gateway": gwHits, "host end": hostEndHits} {
		if n.Load() != 0 {
			t.Errorf("host canary on the %s accepted %d connections", what, n.Load())
		}
	}

	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	tap := name + "-0"
	if !polltest.Wait(5*time.Second, func() bool { return exec.Command("ip", "link", "show", tap).Run() != nil }) {
		t.Errorf("tap %s left 5s after Destroy", tap)
	}
	d.Close()
	if egresstest.TableExists(t, name) {
		t.Errorf("nftables table inet %s left after Close", name)
	}
}
