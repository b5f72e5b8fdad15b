package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox/process/egresstest"
)

// TestSandboxEgress runs `flint server --sandbox-egress` with its egress
// pointed at a fake internet (a network namespace of the test's own, with
// 169.254.169.254 and 10.255.255.2 routed to it as well) and checks
// through Lambda's API that a function reaches that internet, masqueraded,
// and nothing else: not the host's 127.0.0.1 canary, the Flint API, NATS,
// the host's addresses (its end of the sandbox's link, its end of the
// fake internet's link), the metadata or private address, or a
// neighbour's listener. A server without the flag reaches nothing. After
// shutdown no link and no nftables table is left.
func TestSandboxEgress(t *testing.T) {
	requireRoot(t)
	probe := probeBinary(t)
	metadata := netip.MustParseAddr("169.254.169.254")
	private := netip.MustParseAddr("10.255.255.2")
	out := egresstest.New(t, netip.MustParsePrefix("203.0.113.0/24"), metadata, private)
	h := newHostCanaries(t)
	const table = "flinte2e"
	s := startServer(t, t.TempDir(), "--sandbox-egress", "--sandbox-egress-interface", out.HostIface,
		"--sandbox-egress-pool", "100.98.0.0/24", "--sandbox-egress-name", table)
	if !strings.Contains(s.log(), "sandbox egress on") {
		t.Errorf("server log does not say egress is on")
	}
	c := s.lambda()
	zip := zipFiles(map[string]zipEntry{"bootstrap": {data: probe, mode: 0o755}})
	createZipFn(t, c, "egress-probe", zip, 128, 30, 0)
	createZipFn(t, c, "egress-neighbour", zip, 128, 30, 0)

	// Controls: the host reaches the fake internet's extra addresses, so
	// only the filter keeps sandboxes from them.
	for _, a := range []netip.Addr{metadata, private} {
		conn, err := net.DialTimeout("tcp", out.Target(a), 2*time.Second)
		if err != nil {
			t.Fatalf("control: the host cannot reach %s in the fake internet: %v", a, err)
		}
		conn.Close()
	}
	polltest.Check(t, 5*time.Second, "the fake internet to record both connections", func() error {
		if n := len(out.Conns()); n != 2 {
			return fmt.Errorf("fake internet recorded %d connections, want 2", n)
		}
		return nil
	})

	// The neighbour listens; it reaches its own listener.
	nb := probeCall(t, c, "egress-neighbour", "", probeEvent{Action: "listen", N: 7000})
	nAddr, err := netip.ParseAddr(nb.Results["addrs"])
	if err != nil || nb.Results["listen"] != "ok" {
		t.Fatalf("neighbour: %v (%v)", nb.Results, err)
	}
	nTarget := netip.AddrPortFrom(nAddr, 7000).String()
	if r := probeCall(t, c, "egress-neighbour", "", probeEvent{Action: "connect", Addrs: []string{nTarget}}); r.Results[nTarget] != "ok" {
		t.Fatalf("control: the neighbour cannot reach its own listener %s: %v", nTarget, r.Results)
	}

	first := probeCall(t, c, "egress-probe", "", probeEvent{Action: "listen", N: 7001})
	pAddr, err := netip.ParseAddr(first.Results["addrs"])
	if err != nil {
		t.Fatalf("probe addresses: %v (%v)", first.Results, err)
	}
	gw := pAddr.Prev() // the host end of the sandbox's /30 link
	gwCanary, gwHits := egresstest.HostCanary(t, netip.AddrPortFrom(gw, 0).String())
	hostEnd, hostEndHits := egresstest.HostCanary(t, netip.AddrPortFrom(out.HostAddr, 0).String())

	allowed := out.Target(out.Addr)
	denied := []string{
		out.Target(metadata), out.Target(private), nTarget,
		h.ln.Addr().String(), s.addr, gwCanary.Addr().String(), hostEnd.Addr().String(),
	}
	for _, p := range serverPorts(t, s.cmd.Process.Pid) {
		denied = append(denied, net.JoinHostPort(gw.String(), strconv.Itoa(p)), net.JoinHostPort(out.HostAddr.String(), strconv.Itoa(p)))
	}
	r := probeCall(t, c, "egress-probe", "", probeEvent{Action: "connect", Addrs: append([]string{allowed}, denied...)})
	if r.Instance != first.Instance {
		t.Fatalf("the second invocation ran in another sandbox (%s, then %s)", first.Instance, r.Instance)
	}
	if r.Results[allowed] != "ok" {
		t.Errorf("egress to the fake internet %s: %q", allowed, r.Results[allowed])
	}
	for _, a := range denied {
		if v := r.Results[a]; v == "ok" || v == "" {
			t.Errorf("the sandbox reached %s: %q", a, v)
		}
	}
	secLog(t, "egress", fmt.Sprintf("sandbox %s (gateway %s): %v", pAddr, gw, r.Results))
	conns := out.Conns()[2:]
	if len(conns) != 1 || conns[0].Local.Addr() != out.Addr || conns[0].Remote.Addr() != out.HostAddr {
		t.Errorf("fake internet saw %v, want one connection to %s from the host end %s (masqueraded)", conns, out.Addr, out.HostAddr)
	}
	if gwHits.Load() != 0 || hostEndHits.Load() != 0 {
		t.Errorf("host canaries on the gateway / host end accepted %d / %d connections", gwHits.Load(), hostEndHits.Load())
	}
	h.check(t, "egress")

	// Shutdown removes the links and the table.
	s.stop()
	if err := exec.Command("nft", "list", "table", "inet", table).Run(); err == nil {
		t.Errorf("nftables table inet %s left after shutdown", table)
	}
	// The kernel removes the pairs with the sandboxes' namespaces.
	polltest.Check(t, 5*time.Second, "the egress links to be removed", func() error {
		if links := linksWithPrefix(table + "-"); len(links) != 0 {
			return fmt.Errorf("links left after shutdown: %v", links)
		}
		return nil
	})

	// Without the flag a sandbox reaches nothing, the fake internet
	// included, and has no address but loopback.
	off := startServer(t, t.TempDir())
	co := off.lambda()
	createZipFn(t, co, "egress-off", zip, 128, 30, 0)
	lr := probeCall(t, co, "egress-off", "", probeEvent{Action: "listen", N: 7002})
	or := probeCall(t, co, "egress-off", "", probeEvent{Action: "connect", Addrs: []string{allowed, out.Target(metadata), net.JoinHostPort(out.HostAddr.String(), strconv.Itoa(hostEnd.Addr().(*net.TCPAddr).Port))}})
	if lr.Results["addrs"] != "" {
		t.Errorf("without egress the sandbox has addresses %q", lr.Results["addrs"])
	}
	for a, v := range or.Results {
		if v == "ok" {
			t.Errorf("without egress the sandbox reached %s", a)
		}
	}
	if n := len(out.Conns()); n != 3 {
		t.Errorf("without egress the fake internet saw %d connections in all, want 3", n)
	}
	secLog(t, "egress off", fmt.Sprintf("addrs %q; %v", lr.Results["addrs"], or.Results))
	h.check(t, "egress off")
}

// linksWithPrefix lists the host's network interfaces whose name starts
// with prefix.
func linksWithPrefix(prefix string) []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, prefix) {
			out = append(out, i.Name)
		}
	}
	return out
}
