package process_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/sandbox/process/egresstest"
)

// connectScript tries a TCP connection to each argument (host:port) and
// prints "<target> ok" or "<target> <error>", then whether IPv6 is off;
// with "--serve PORT" first it also listens on PORT and keeps serving.
const connectScript = `
import socket, sys, threading
args = sys.argv[1:]
srv = None
if args and args[0] == "--serve":
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(args[1]))); srv.listen(16); args = args[2:]
    def serve():
        while True:
            c, _ = srv.accept(); c.close()
    threading.Thread(target=serve, daemon=True).start()
for a in args:
    h, p = a.rsplit(":", 1)
    if h == "SELF":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("192.0.2.1", 9)); h = u.getsockname()[0]
    try:
        socket.create_connection((h, int(p)), timeout=1.5).close(); r = "ok"
    except Exception as e:
        r = type(e).__name__
    print(a, r, flush=True)
try:
    print("ipv6-disabled", open("/proc/sys/net/ipv6/conf/all/disable_ipv6").read().strip(), flush=True)
except Exception as e:
    print("ipv6-disabled", type(e).__name__, flush=True)
print("resolv", open("/etc/resolv.conf").read().split()[1], flush=True)
print("done", flush=True)
if srv:
    threading.Event().wait()
`

// results parses connectScript's output.
func results(out string) map[string]string {
	r := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			r[k] = v
		}
	}
	return r
}

// waitOutput polls until out contains "done" (bounded).
func waitOutput(t *testing.T, out *outputtest.Buffer, what string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if s := out.String(); strings.Contains(s, "\ndone\n") || strings.HasPrefix(s, "done\n") {
			return results(s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no result within 30s; output: %q", what, out.String())
	return nil
}

func hostLinks(prefix string) []string {
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	var links []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], prefix) {
			links = append(links, f[1])
		}
	}
	return links
}

// TestEgress: with egress on, a sandbox reaches a fake internet (a
// network namespace of the test) through NAT, and nothing else: not the
// host's addresses (the link's gateway, the host end of the fake
// internet's link, 127.0.0.1), not link-local or private addresses even
// when the host routes them, not a neighbour sandbox. Without egress it
// reaches nothing. Destroy and Close leave no link and no nftables table.
func TestEgress(t *testing.T) {
	metadata := netip.MustParseAddr("169.254.170.2") // ECS task metadata (the e2e test uses 169.254.169.254)
	private := netip.MustParseAddr("10.255.255.1")
	out := egresstest.New(t, netip.MustParsePrefix("198.51.100.0/24"), metadata, private)
	const name = "flinttd"
	pool := netip.MustParsePrefix("100.97.0.0/24")
	d := newDriver(t, func(c *process.Config) {
		c.CgroupParent = testParent
		c.Egress = &process.EgressConfig{Pool: pool, Interface: out.HostIface, Name: name, Nameservers: []netip.Addr{out.Addr}}
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close(context.Background())
		}
	})
	if !egresstest.TableExists(t, name) {
		t.Fatalf("nftables table inet %s missing after New", name)
	}

	// The fake internet's other addresses are reachable from the host:
	// only the filter can keep a sandbox from them.
	for _, a := range []netip.Addr{metadata, private} {
		c, err := net.DialTimeout("tcp", out.Target(a), 2*time.Second)
		if err != nil {
			t.Fatalf("control: the host cannot reach %s in the fake internet: %v", a, err)
		}
		c.Close()
	}
	base := 2
	for i := 0; i < 500 && len(out.Conns()) < base; i++ {
		time.Sleep(10 * time.Millisecond) // the accept loop records them
	}
	if n := len(out.Conns()); n != base {
		t.Fatalf("control: the fake internet recorded %d connections, want %d", n, base)
	}

	ctx := context.Background()
	mkOn := func(d *process.Driver, id string, o *outputtest.Buffer, args ...string) *process.Sandbox {
		t.Helper()
		sp := spec(t, id+"-"+strconv.Itoa(os.Getpid()), append([]string{"/usr/bin/python3", "-c", connectScript}, args...)...)
		sp.Output = o
		sb, err := d.Create(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Destroy(context.Background()) })
		return sb.(*process.Sandbox)
	}
	mk := func(id string, o *outputtest.Buffer, args ...string) *process.Sandbox { return mkOn(d, id, o, args...) }

	// Without egress (the default) the fake internet is out of reach.
	var offOut outputtest.Buffer
	off := mkOn(newDriver(t, func(c *process.Config) { c.CgroupParent = testParent }), "egress-off", &offOut, out.Target(out.Addr))
	if _, _, ok := off.EgressAddr(); ok {
		t.Error("a driver without egress gave a sandbox an egress link")
	}
	offR := waitOutput(t, &offOut, "egress off")
	if offR[out.Target(out.Addr)] == "ok" || len(out.Conns()) != base {
		t.Errorf("without egress the sandbox reached the fake internet: %v", offR)
	} else {
		t.Logf("egress off: %v", offR)
	}
	off.Destroy(ctx)

	// The neighbour listens on its egress address and can reach itself.
	var nOut outputtest.Buffer
	neighbour := mk("egress-neighbour", &nOut, "--serve", "7000", "SELF:7000")
	nAddr, _, ok := neighbour.EgressAddr()
	if !ok {
		t.Fatal("EgressAddr: no egress link")
	}
	nTarget := netip.AddrPortFrom(nAddr, 7000).String()
	// The prober gets the next /30: its gateway is predictable, so a
	// canary can wait on it before it exists.
	gw := netip.AddrFrom4([4]byte(nAddr.As4())).Next().Next().Next() // .1 of the next /30
	gwCanary, gwHits := egresstest.HostCanary(t, netip.AddrPortFrom(gw, 0).String())
	hostEnd, hostEndHits := egresstest.HostCanary(t, netip.AddrPortFrom(out.HostAddr, 0).String())
	lo, loHits := egresstest.HostCanary(t, "127.0.0.1:0")

	var pOut outputtest.Buffer
	allowed := out.Target(out.Addr)
	denied := []string{
		out.Target(metadata), out.Target(private), nTarget,
		gwCanary.Addr().String(), hostEnd.Addr().String(), lo.Addr().String(),
	}
	prober := mk("egress-prober", &pOut, append([]string{allowed}, denied...)...)
	pAddr, pGw, _ := prober.EgressAddr()
	if pGw != gw {
		t.Fatalf("prober's gateway %s, want %s (canary placed there)", pGw, gw)
	}
	r := waitOutput(t, &pOut, "prober")
	self := waitOutput(t, &nOut, "neighbour")
	t.Logf("prober %s: %v; neighbour %s: %v", pAddr, r, nAddr, self)

	if r[allowed] != "ok" {
		t.Errorf("egress to the fake internet %s: %q", allowed, r[allowed])
	}
	for _, a := range denied {
		if r[a] == "ok" || r[a] == "" {
			t.Errorf("sandbox reached %s: %q", a, r[a])
		}
	}
	if r["resolv"] != out.Addr.String() || offR["resolv"] != "127.0.0.1" {
		t.Errorf("resolv.conf nameserver: %q with egress (want %s), %q without", r["resolv"], out.Addr, offR["resolv"])
	}
	if r["ipv6-disabled"] != "1" {
		t.Errorf("IPv6 in the sandbox: disable_ipv6 = %q", r["ipv6-disabled"])
	}
	// The neighbour's listener works: it reaches it itself.
	if self["SELF:7000"] != "ok" {
		t.Errorf("control: the neighbour cannot reach its own listener: %q", self["SELF:7000"])
	}
	conns := out.Conns()[base:]
	if len(conns) != 1 || conns[0].Local.Addr() != out.Addr || conns[0].Remote.Addr() != out.HostAddr {
		t.Errorf("fake internet saw %v, want one connection to %s from the host end %s (masqueraded)", conns, out.Addr, out.HostAddr)
	}
	for what, n := range map[string]*atomic.Int64{"gateway": gwHits, "host end": hostEndHits, "127.0.0.1": loHits} {
		if n.Load() != 0 {
			t.Errorf("host canary on the %s accepted %d connections", what, n.Load())
		}
	}

	// Teardown: links go with Destroy, the table with Close.
	for _, sb := range []sandbox.Sandbox{prober, neighbour} {
		if err := sb.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel removes the pairs with the namespaces, in the background.
	var left []string
	for i := 0; i < 500; i++ {
		if left = hostLinks(name + "-"); len(left) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) != 0 {
		t.Errorf("links left 5s after Destroy: %v", left)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	if egresstest.TableExists(t, name) {
		t.Errorf("nftables table inet %s left after Close", name)
	}
}

// BenchmarkCreateEgress is BenchmarkCreate with egress on (the veth pair
// costs three rtnetlink requests on the host and a few system calls in
// the init);
// compare its p50 with BenchmarkCreate's.
func BenchmarkCreateEgress(b *testing.B) {
	out := egresstest.New(b, netip.MustParsePrefix("198.51.100.0/24"))
	egress := func(c *process.Config) {
		c.Egress = &process.EgressConfig{Pool: netip.MustParsePrefix("100.97.0.0/24"), Interface: out.HostIface, Name: "flinttb"}
	}
	b.Run("reexec", func(b *testing.B) { benchCreate(b, "", egress) })
	b.Run("initbin", func(b *testing.B) { benchCreate(b, buildInitBin(b), egress) })
}

// TestEgressSkipsTakenLink: a link name still taken (the kernel removes a
// dead sandbox's pair in the background) is skipped, not reused.
func TestEgressSkipsTakenLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	egresstest.Lock(t)
	const name = "flinttx"
	if out, err := exec.Command("ip", "link", "add", name+"-0", "type", "veth", "peer", "name", name+"-p").CombinedOutput(); err != nil {
		t.Skipf("cannot create a veth pair: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "delete", name+"-0").Run() })
	d := newDriver(t, func(c *process.Config) {
		c.CgroupParent = testParent
		c.Egress = &process.EgressConfig{Pool: netip.MustParsePrefix("100.97.1.0/28"), Interface: "lo", Name: name}
	})
	t.Cleanup(func() { d.Close(context.Background()) })
	sb, err := d.Create(context.Background(), spec(t, "egress-skip-"+strconv.Itoa(os.Getpid()), "/bin/sleep", "600"))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	addr, gw, _ := sb.(*process.Sandbox).EgressAddr()
	if want := netip.MustParseAddr("100.97.1.6"); addr != want || gw != want.Prev() {
		t.Errorf("sandbox got %s via %s, want the second /30 (%s)", addr, gw, want)
	}
}

func TestEgressConfigValidate(t *testing.T) {
	good := process.Config{StateDir: "/x", Egress: &process.EgressConfig{}}
	if err := good.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, e := range []process.EgressConfig{
		{Pool: netip.MustParsePrefix("100.96.0.0/29")}, // too small
		{Pool: netip.MustParsePrefix("100.96.0.1/16")}, // not a network
		{Pool: netip.MustParsePrefix("fd00::/64")},     // IPv6
		{Name: "Flint"}, {Name: "flint-x"}, {Name: "flint12345"},
		{Interface: "eth0\" accept"},
		{Deny: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}},
		{Nameservers: []netip.Addr{netip.MustParseAddr("169.254.169.253")}}, // denied
		{Nameservers: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
	} {
		cfg := process.Config{StateDir: "/x", Egress: &e}
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: accepted", e)
		}
	}
}
