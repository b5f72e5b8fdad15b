// Package egress gives sandboxes outbound network access with refusals:
// a /30 link per sandbox carved from an address pool, an nftables table
// that drops what a sandbox sends to the host, to private and link-local
// ranges and to other sandboxes, and masquerades the rest out of one
// interface. The host end of a link is a veth pair (the process driver)
// or a tap device (the microvm driver); both are named "<Name>-<slot>",
// which is what the nftables rules match.
package egress

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

	"github.com/vishvananda/netlink"
)

// Defaults of Config.
const (
	DefaultName = "flint"
	// SandboxIface is the name of the egress interface inside a sandbox.
	SandboxIface = "eth0"
)

// DefaultPool is the address range sandboxes get their /30 links
// from: part of the carrier-grade NAT range (RFC 6598), not link-local and
// unlikely to be used on the host's LAN.
var DefaultPool = netip.MustParsePrefix("100.96.0.0/16")

// DefaultDeny are the destinations a sandbox can never reach even
// with egress on (besides every address of the host itself, refused in
// the input hook, and the pool): "this network", the private ranges of
// RFC 1918, carrier-grade NAT, loopback, link-local (cloud metadata at
// 169.254.169.254), multicast and the reserved range.
var DefaultDeny = []netip.Prefix{
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

// Config turns on outbound network access for every sandbox of a
// driver: each sandbox gets a link (SandboxIface inside, with an address
// from Pool and a default route via the host end: a veth pair or a tap
// device) and the host
// masquerades its traffic out of Interface. An nftables table (inet Name)
// drops everything a sandbox sends to the host itself (any of its
// addresses, over IPv4 or IPv6), to Deny, to the pool (other sandboxes),
// over IPv6, or out of any interface but Interface, and any connection
// opened towards a sandbox (installTable shows it in nft's syntax). It
// needs nf_tables in the kernel and sets net.ipv4.ip_forward to 1.
//
// Only one driver per host may use a Name or overlapping Pools.
type Config struct {
	// Pool is the IPv4 range sandbox links are carved from, one /30 per
	// sandbox (default DefaultPool); its prefix length is 8 to 28.
	Pool netip.Prefix
	// Interface is the host interface traffic leaves by (default: the
	// interface of the default route, looked up in New).
	Interface string
	// Name names the nftables table and prefixes the host ends of the
	// links ("<Name>-<slot>"): 1 to 9 of [a-z0-9]. Default "flint".
	Name string
	// Deny replaces DefaultDeny when set.
	Deny []netip.Prefix
	// Nameservers, when set, replace the sandbox's resolv.conf (which
	// otherwise points at 127.0.0.1, where nothing answers). They must be
	// IPv4 addresses outside Deny and Pool.
	Nameservers []netip.Addr
}

func (c *Config) setDefaults() {
	if !c.Pool.IsValid() {
		c.Pool = DefaultPool
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Deny == nil {
		c.Deny = DefaultDeny
	}
}

// Validate reports the first invalid field, in the caller's terms.
func (c Config) Validate() error {
	c.setDefaults()
	if !c.Pool.Addr().Is4() || c.Pool.Bits() < 8 || c.Pool.Bits() > 28 || c.Pool.Masked() != c.Pool {
		return fmt.Errorf("egress: pool %s must be an IPv4 network of /8 to /28", c.Pool)
	}
	if len(c.Name) > 9 || strings.Trim(c.Name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return fmt.Errorf("egress: name %q must be 1 to 9 of [a-z0-9]", c.Name)
	}
	if c.Interface != "" && (len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "\"\\/ \n\t*")) {
		return fmt.Errorf("egress: interface %q is not an interface name", c.Interface)
	}
	for _, p := range c.Deny {
		if !p.Addr().Is4() {
			return fmt.Errorf("egress: deny %s is not an IPv4 prefix (IPv6 is refused entirely)", p)
		}
	}
	for _, ns := range c.Nameservers {
		if !ns.Is4() {
			return fmt.Errorf("egress: nameserver %s is not an IPv4 address", ns)
		}
		for _, p := range append([]netip.Prefix{c.Pool}, c.Deny...) {
			if p.Contains(ns) {
				return fmt.Errorf("egress: nameserver %s is unreachable from sandboxes (in %s)", ns, p)
			}
		}
	}
	return nil
}

// ResolvConf is the sandboxes' resolv.conf, "" to keep the default.
func (c Config) ResolvConf() string {
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

// Egress hands out sandbox links and owns the nftables table. Safe for
// concurrent use.
type Egress struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex        // guards used and next
	used map[uint32]string // slot → host end of its veth pair
	next uint32            // where the search for a free slot starts
}

// Start enables IPv4 forwarding and installs the nftables table
// (replacing one a crashed run left behind). The caller validated cfg.
func Start(cfg Config, log *slog.Logger) (*Egress, error) {
	cfg.setDefaults()
	if cfg.Interface == "" {
		ifc, err := defaultRouteIface()
		if err != nil {
			return nil, fmt.Errorf("egress interface: %w", err)
		}
		cfg.Interface = ifc
	}
	e := &Egress{cfg: cfg, log: log, used: map[uint32]string{}}
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

// Close deletes the links still attached and removes the nftables table.
// IPv4 forwarding stays on (other software may rely on it by now).
func (e *Egress) Close(ctx context.Context) error {
	e.mu.Lock()
	left := make([]*Link, 0, len(e.used))
	for slot, name := range e.used {
		left = append(left, &Link{e: e, slot: slot, Host: name})
	}
	e.mu.Unlock()
	for _, l := range left {
		e.log.Warn("sandbox egress: closing with a sandbox link left; deleting it", "link", l.Host)
		if err := l.Remove(); err != nil {
			return fmt.Errorf("keeping nftables table inet %s: %w", e.cfg.Name, err)
		}
	}
	if err := deleteTable(e.cfg.Name); err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", e.cfg.Name, err)
	}
	return nil
}

// Link is one sandbox's /30: the host end (Gateway, on the device named
// Host) and the sandbox's end (Addr).
type Link struct {
	e    *Egress
	slot uint32
	// Host is the name of the host end's device.
	Host string
	// Addr is the sandbox's address, Gateway the host end's, both in a
	// network of PrefixLen bits.
	Addr, Gateway [4]byte
	PrefixLen     int
}

// attachTries bounds the slots attach tries when names are still taken
// by links the kernel has not removed yet.
const attachTries = 4

// AttachVeth reserves a /30 and creates a veth pair whose sandbox end
// (SandboxIface) goes into the network namespace of pid; the sandbox
// configures that end. Release the link once the sandbox is dead.
func (e *Egress) AttachVeth(ctx context.Context, pid int) (*Link, error) {
	l, _, err := e.attach(ctx, func(name string) (netlink.Link, error) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.Flags = name, net.FlagUp
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: SandboxIface, PeerNamespace: netlink.NsPid(pid)}
		if err := netlink.LinkAdd(veth); err != nil {
			return nil, fmt.Errorf("veth %s: %w", name, err)
		}
		return veth, nil
	})
	return l, err
}

// AttachTap reserves a /30 and creates a tap device for it, up, with the
// gateway's address; tap is its only queue's descriptor (no packet
// information header, with the virtio-net header: what QEMU's
// "-netdev tap,fd=" expects). The device is not persistent: it goes when
// the last copy of tap is closed (after the VMM has exited), and the
// caller then calls Release.
func (e *Egress) AttachTap(ctx context.Context) (l *Link, tap *os.File, err error) {
	return e.attach(ctx, func(name string) (netlink.Link, error) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		t := &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR, Queues: 1, NonPersist: true}
		if err := netlink.LinkAdd(t); err != nil {
			return nil, fmt.Errorf("tap %s: %w", name, err)
		}
		if err := netlink.LinkSetUp(t); err != nil {
			for _, f := range t.Fds {
				f.Close()
			}
			return nil, fmt.Errorf("tap %s: up: %w", name, err)
		}
		return t, nil
	})
}

// attach reserves a slot, creates its host end with add and gives it the
// gateway's address, retrying other slots while names are still taken.
// The file is a tap's descriptor, nil for a veth.
func (e *Egress) attach(ctx context.Context, add func(name string) (netlink.Link, error)) (*Link, *os.File, error) {
	var err error
	for i := 0; i < attachTries; i++ {
		var l *Link
		var f *os.File
		if l, f, err = e.tryAttach(add); err == nil {
			return l, f, nil
		}
		if !errors.Is(err, unix.EEXIST) || ctx.Err() != nil {
			break
		}
	}
	return nil, nil, err
}

func (e *Egress) tryAttach(add func(name string) (netlink.Link, error)) (*Link, *os.File, error) {
	slot, err := e.reserve()
	if err != nil {
		return nil, nil, err
	}
	base := binary.BigEndian.Uint32(e.cfg.Pool.Addr().AsSlice()) + slot*4
	l := &Link{e: e, slot: slot, Host: e.linkName(slot), PrefixLen: 30}
	binary.BigEndian.PutUint32(l.Gateway[:], base+1)
	binary.BigEndian.PutUint32(l.Addr[:], base+2)
	// Two or three rtnetlink requests: create the host end (up), give it
	// its address. (An exec of ip -batch cost ~3.5 ms.)
	dev, err := add(l.Host)
	if err != nil {
		l.Release()
		return nil, nil, err
	}
	var tap *os.File
	if t, ok := dev.(*netlink.Tuntap); ok && len(t.Fds) > 0 {
		tap = t.Fds[0]
	}
	gwAddr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(l.Gateway[:]), Mask: net.CIDRMask(l.PrefixLen, 32)}}
	if dev.Attrs().Index == 0 {
		err = fmt.Errorf("%s: created but not found", l.Host)
	} else if err = netlink.AddrAdd(dev, gwAddr); err != nil {
		err = fmt.Errorf("%s: address: %w", l.Host, err)
	}
	if err != nil {
		if tap != nil {
			tap.Close() // the tap goes with its last descriptor
		}
		l.Remove()
		return nil, nil, err
	}
	return l, tap, nil
}

func (e *Egress) linkName(slot uint32) string { return fmt.Sprintf("%s-%x", e.cfg.Name, slot) }

// reserve takes a free slot (a /30 of the pool).
func (e *Egress) reserve() (uint32, error) {
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

// Release frees the link's slot. Call it once the sandbox's processes are
// dead (or its VMM has exited): the kernel then removes the veth pair
// with the network namespace (the tap with its last descriptor), in the
// background. Deleting it here ("ip link delete", or waiting for it to
// go) was measured to slow the next Create's cgroup migration from ~2 ms
// to 7-10 ms (the netdev teardown's RCU grace periods), so Release does
// neither; slots are handed out round-robin and attach skips a name still
// taken, so a lingering link is never reused.
func (l *Link) Release() {
	l.e.mu.Lock()
	delete(l.e.used, l.slot)
	l.e.mu.Unlock()
}

// Remove deletes the link (for links whose sandbox is still alive when
// the driver closes) and frees its slot.
func (l *Link) Remove() error {
	dev, err := netlink.LinkByName(l.Host)
	if err == nil {
		err = netlink.LinkDel(dev)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) && !errors.As(err, new(netlink.LinkNotFoundError)) {
		return fmt.Errorf("delete %s: %w", l.Host, err)
	}
	l.Release()
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
