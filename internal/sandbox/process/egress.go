package process

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
	"github.com/vishvananda/netlink"
)

// Defaults of EgressConfig.
const (
	DefaultEgressName = "flint"
	// SandboxIface is the name of the egress interface inside a sandbox.
	SandboxIface = "eth0"
)

// DefaultEgressPool is the address range sandboxes get their /30 links
// from: part of the carrier-grade NAT range (RFC 6598), not link-local and
// unlikely to be used on the host's LAN.
var DefaultEgressPool = netip.MustParsePrefix("100.96.0.0/16")

// DefaultEgressDeny are the destinations a sandbox can never reach even
// with egress on (besides every address of the host itself, refused in
// the input hook, and the pool): "this network", the private ranges of
// RFC 1918, carrier-grade NAT, loopback, link-local (cloud metadata at
// 169.254.169.254), multicast and the reserved range.
var DefaultEgressDeny = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// EgressConfig turns on outbound network access for every sandbox of a
// driver: each sandbox gets a veth pair (SandboxIface inside, with an
// address from Pool and a default route via the host end) and the host
// masquerades its traffic out of Interface. An nftables table (inet Name)
// drops everything a sandbox sends to the host itself (any of its
// addresses, over IPv4 or IPv6), to Deny, to the pool (other sandboxes),
// over IPv6, or out of any interface but Interface, and any connection
// opened towards a sandbox (installTable shows it in nft's syntax). It
// needs nf_tables in the kernel and sets net.ipv4.ip_forward to 1.
//
// Only one driver per host may use a Name or overlapping Pools.
type EgressConfig struct {
	// Pool is the IPv4 range sandbox links are carved from, one /30 per
	// sandbox (default DefaultEgressPool); its prefix length is 8 to 28.
	Pool netip.Prefix
	// Interface is the host interface traffic leaves by (default: the
	// interface of the default route, looked up in New).
	Interface string
	// Name names the nftables table and prefixes the host ends of the
	// veth pairs ("<Name>-<slot>"): 1 to 9 of [a-z0-9]. Default "flint".
	Name string
	// Deny replaces DefaultEgressDeny when set.
	Deny []netip.Prefix
	// Nameservers, when set, replace the sandbox's resolv.conf (which
	// otherwise points at 127.0.0.1, where nothing answers). They must be
	// IPv4 addresses outside Deny and Pool.
	Nameservers []netip.Addr
}

func (c *EgressConfig) setDefaults() {
	if !c.Pool.IsValid() {
		c.Pool = DefaultEgressPool
	}
	if c.Name == "" {
		c.Name = DefaultEgressName
	}
	if c.Deny == nil {
		c.Deny = DefaultEgressDeny
	}
}

func (c EgressConfig) validate() error {
	c.setDefaults()
	if !c.Pool.Addr().Is4() || c.Pool.Bits() < 8 || c.Pool.Bits() > 28 || c.Pool.Masked() != c.Pool {
		return fmt.Errorf("process: egress pool %s must be an IPv4 network of /8 to /28", c.Pool)
	}
	if len(c.Name) > 9 || strings.Trim(c.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return fmt.Errorf("process: egress name %q must be 1 to 9 of [a-z0-9]", c.Name)
	}
	if c.Interface != "" && (len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "\"\\/ \n\t*")) {
		return fmt.Errorf("process: egress interface %q is not an interface name", c.Interface)
	}
	for _, p := range c.Deny {
		if !p.Addr().Is4() {
			return fmt.Errorf("process: egress deny %s is not an IPv4 prefix (IPv6 is refused entirely)", p)
		}
	}
	for _, ns := range c.Nameservers {
		if !ns.Is4() {
			return fmt.Errorf("process: egress nameserver %s is not an IPv4 address", ns)
		}
		for _, p := range append([]netip.Prefix{c.Pool}, c.Deny...) {
			if p.Contains(ns) {
				return fmt.Errorf("process: egress nameserver %s is unreachable from sandboxes (in %s)", ns, p)
			}
		}
	}
	return nil
}

// resolvConf is the sandboxes' resolv.conf, "" to keep the default.
func (c EgressConfig) resolvConf() string {
	if len(c.Nameservers) == 0 {
		return ""
	}
	var b strings.Builder
	for _, ns := range c.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	b.WriteString("options timeout:2 attempts:2\n")
	return b.String()
}

// egress hands out sandbox links and owns the nftables table. Safe for
// concurrent use.
type egress struct {
	cfg EgressConfig
	log *slog.Logger

	mu   sync.Mutex        // guards used and next
	used map[uint32]string // slot → host end of its veth pair
	next uint32            // where the search for a free slot starts
}

// startEgress enables IPv4 forwarding and installs the nftables table
// (replacing one a crashed run left behind).
func startEgress(cfg EgressConfig, log *slog.Logger) (*egress, error) {
	cfg.setDefaults()
	if cfg.Interface == "" {
		ifc, err := defaultRouteIface()
		if err != nil {
			return nil, fmt.Errorf("egress interface: %w", err)
		}
		cfg.Interface = ifc
	}
	e := &egress{cfg: cfg, log: log, used: map[uint32]string{}}
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(fwd); err != nil || strings.TrimSpace(string(b)) != "1" {
		if err := os.WriteFile(fwd, []byte("1"), 0); err != nil {
			return nil, fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
		log.Info("sandbox egress: enabled IPv4 forwarding (net.ipv4.ip_forward=1)")
	}
	if err := installTable(cfg); err != nil {
		return nil, fmt.Errorf("install nftables table inet %s: %w", cfg.Name, err)
	}
	log.Info("sandbox egress on", "pool", cfg.Pool.String(), "interface", cfg.Interface, "nft_table", "inet "+cfg.Name)
	return e, nil
}

// close removes the nftables table. IPv4 forwarding stays on (other
// software may rely on it by now).
func (e *egress) close(ctx context.Context) error {
	e.mu.Lock()
	left := make([]*link, 0, len(e.used))
	for slot, name := range e.used {
		left = append(left, &link{e: e, slot: slot, host: name})
	}
	e.mu.Unlock()
	for _, l := range left {
		e.log.Warn("sandbox egress: closing with a sandbox link left; deleting it", "link", l.host)
		if err := l.remove(); err != nil {
			return fmt.Errorf("keeping nftables table inet %s: %w", e.cfg.Name, err)
		}
	}
	if err := deleteTable(e.cfg.Name); err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", e.cfg.Name, err)
	}
	return nil
}

// link is one sandbox's veth pair.
type link struct {
	e    *egress
	slot uint32
	host string // host end's name
	net  nsinit.Net
}

// attachTries bounds the slots attach tries when names are still taken
// by links the kernel has not removed yet.
const attachTries = 4

// attach reserves a /30 and creates a veth pair whose sandbox end goes
// into the network namespace of pid; the init configures that end.
func (e *egress) attach(ctx context.Context, pid int) (*link, error) {
	var err error
	for i := 0; i < attachTries; i++ {
		var l *link
		if l, err = e.tryAttach(pid); err == nil {
			return l, nil
		}
		if !errors.Is(err, unix.EEXIST) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func (e *egress) tryAttach(pid int) (*link, error) {
	slot, err := e.reserve()
	if err != nil {
		return nil, err
	}
	base := binary.BigEndian.Uint32(e.cfg.Pool.Addr().AsSlice()) + slot*4
	var gw, addr [4]byte
	binary.BigEndian.PutUint32(gw[:], base+1)
	binary.BigEndian.PutUint32(addr[:], base+2)
	l := &link{
		e: e, slot: slot, host: e.linkName(slot),
		net: nsinit.Net{Iface: SandboxIface, Addr: addr, PrefixLen: 30, Gateway: gw},
	}
	// Three rtnetlink requests: create the pair (the host end up, the
	// peer in the sandbox), look up the host end, give it its address.
	// (An exec of ip -batch cost ~3.5 ms.)
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.Flags = l.host, net.FlagUp
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: SandboxIface, PeerNamespace: netlink.NsPid(pid)}
	if err := netlink.LinkAdd(veth); err != nil {
		l.release()
		return nil, fmt.Errorf("veth %s: %w", l.host, err)
	}
	gwAddr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(gw[:]), Mask: net.CIDRMask(30, 32)}}
	if veth.Index == 0 {
		err = fmt.Errorf("veth %s: created but not found", l.host)
	} else if err = netlink.AddrAdd(veth, gwAddr); err != nil {
		err = fmt.Errorf("veth %s: address: %w", l.host, err)
	}
	if err != nil {
		l.remove()
		return nil, err
	}
	return l, nil
}

func (e *egress) linkName(slot uint32) string { return fmt.Sprintf("%s-%x", e.cfg.Name, slot) }

// reserve takes a free slot (a /30 of the pool).
func (e *egress) reserve() (uint32, error) {
	n := uint32(1) << (30 - e.cfg.Pool.Bits())
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := uint32(0); i < n; i++ {
		s := (e.next + i) % n
		if _, ok := e.used[s]; !ok {
			e.used[s] = e.linkName(s)
			e.next = (s + 1) % n
			return s, nil
		}
	}
	return 0, fmt.Errorf("egress pool %s exhausted (%d sandboxes)", e.cfg.Pool, n)
}

// release frees the link's slot. Call it once the sandbox's processes are
// dead: the kernel then removes the veth pair with the network namespace,
// in the background. Deleting it here ("ip link delete", or waiting for
// it to go) was measured to slow the next Create's cgroup migration from
// ~2 ms to 7-10 ms (the netdev teardown's RCU grace periods), so release
// does neither; slots are handed out round-robin and attach skips a name
// still taken, so a lingering link is never reused.
func (l *link) release() {
	l.e.mu.Lock()
	delete(l.e.used, l.slot)
	l.e.mu.Unlock()
}

// remove deletes the link (for links whose sandbox is still alive when
// the driver closes) and frees its slot.
func (l *link) remove() error {
	veth, err := netlink.LinkByName(l.host)
	if err == nil {
		err = netlink.LinkDel(veth)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) && !errors.As(err, new(netlink.LinkNotFoundError)) {
		return fmt.Errorf("delete veth %s: %w", l.host, err)
	}
	l.release()
	return nil
}

// defaultRouteIface reads the interface of the IPv4 default route with
// the lowest metric from /proc/net/route.
func defaultRouteIface() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	best, bestMetric := "", -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(fl) < 8 || fl[1] != "00000000" || fl[7] != "00000000" {
			continue
		}
		m, err := strconv.Atoi(fl[6])
		if err != nil {
			continue
		}
		if bestMetric < 0 || m < bestMetric {
			best, bestMetric = fl[0], m
		}
	}
	if best == "" {
		return "", errors.New("no IPv4 default route")
	}
	return best, nil
}
