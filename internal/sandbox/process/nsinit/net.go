package nsinit

import (
	"errors"
	"syscall"
	"unsafe"
)

// Net configures the sandbox's one outside interface (egress mode). The
// host has already moved the interface into the sandbox's network
// namespace; the init gives it its address and default route.
type Net struct {
	// Iface is the interface's name inside the sandbox (e.g. "eth0").
	Iface string
	// Addr is the sandbox's IPv4 address, PrefixLen its prefix length.
	Addr      [4]byte
	PrefixLen int
	// Gateway is the host end of the link: the default route.
	Gateway [4]byte
}

// SetupNet disables IPv6 in the sandbox's network namespace (egress is
// IPv4 only; the host filters IPv6 too), gives the interface its address,
// brings it up and adds the default route.
func SetupNet(n *Net) error {
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/" + n.Iface + "/disable_ipv6"} {
		if err := writeExisting(p, "1"); err != nil && err != syscall.ENOENT {
			return wrap("disable IPv6", err)
		}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	ifr, err := newIfreq(n.Iface)
	if err != nil {
		return err
	}
	ifr.setInet4(n.Addr)
	if err := ioctlIfreq(fd, syscall.SIOCSIFADDR, ifr); err != nil {
		return wrap("address of "+n.Iface, err)
	}
	if n.PrefixLen < 1 || n.PrefixLen > 30 {
		return errors.New("prefix length " + itoa(n.PrefixLen))
	}
	m := ^uint32(0) << (32 - n.PrefixLen)
	ifr.setInet4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
	if err := ioctlIfreq(fd, syscall.SIOCSIFNETMASK, ifr); err != nil {
		return wrap("netmask of "+n.Iface, err)
	}
	if err := ioctlIfreq(fd, syscall.SIOCGIFFLAGS, ifr); err != nil {
		return wrap("flags of "+n.Iface, err)
	}
	ifr.setFlags(ifr.flags() | syscall.IFF_UP)
	if err := ioctlIfreq(fd, syscall.SIOCSIFFLAGS, ifr); err != nil {
		return wrap("set "+n.Iface+" up", err)
	}
	return addDefaultRoute(n.Gateway)
}

// addDefaultRoute adds "default via gw" to the main table with one
// rtnetlink request and waits for its acknowledgement.
func addDefaultRoute(gw [4]byte) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return wrap("netlink socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return wrap("netlink bind", err)
	}
	// struct { nlmsghdr; rtmsg; rtattr; [4]byte } in native (little)
	// endianness.
	type request struct {
		hdr  syscall.NlMsghdr
		rt   syscall.RtMsg
		attr syscall.RtAttr
		gw   [4]byte
	}
	req := request{
		hdr: syscall.NlMsghdr{
			Type:  syscall.RTM_NEWROUTE,
			Flags: syscall.NLM_F_REQUEST | syscall.NLM_F_ACK | syscall.NLM_F_CREATE | syscall.NLM_F_EXCL,
			Seq:   1,
		},
		rt: syscall.RtMsg{
			Family: syscall.AF_INET, Dst_len: 0, // destination prefix length: default route
			Table: syscall.RT_TABLE_MAIN, Protocol: syscall.RTPROT_BOOT,
			Scope: syscall.RT_SCOPE_UNIVERSE, Type: syscall.RTN_UNICAST,
		},
		attr: syscall.RtAttr{Len: syscall.SizeofRtAttr + 4, Type: syscall.RTA_GATEWAY},
		gw:   gw,
	}
	req.hdr.Len = uint32(unsafe.Sizeof(req))
	b := (*[unsafe.Sizeof(request{})]byte)(unsafe.Pointer(&req))[:]
	if err := syscall.Sendto(fd, b, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return wrap("netlink send", err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return wrap("netlink receive", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return wrap("netlink reply", err)
	}
	for _, m := range msgs {
		if m.Header.Type == syscall.NLMSG_ERROR && len(m.Data) >= 4 {
			d := m.Data
			if errno := int32(uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16 | uint32(d[3])<<24); errno != 0 {
				return wrap("add default route", syscall.Errno(-errno))
			}
			return nil
		}
	}
	return errors.New("add default route: no acknowledgement")
}
