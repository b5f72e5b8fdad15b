package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// nlMsg builds one rtnetlink request: a header, a fixed-size family
// message, then attributes (nested ones by start/end).
type nlMsg struct {
	b     []byte
	nests []int
}

var ne = binary.NativeEndian

func newNLMsg(typ, flags uint16, family []byte) *nlMsg {
	m := &nlMsg{b: make([]byte, unix.SizeofNlMsghdr, 256)}
	ne.PutUint16(m.b[4:], typ)
	ne.PutUint16(m.b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(m.b[8:], 1) // sequence number
	m.b = append(m.b, family...)
	m.pad()
	return m
}

func (m *nlMsg) pad() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *nlMsg) attr(typ uint16, data []byte) {
	var h [4]byte
	ne.PutUint16(h[0:], uint16(unix.SizeofRtAttr+len(data)))
	ne.PutUint16(h[2:], typ)
	m.b = append(append(m.b, h[:]...), data...)
	m.pad()
}

func (m *nlMsg) str(typ uint16, s string) { m.attr(typ, append([]byte(s), 0)) }

func (m *nlMsg) u32(typ uint16, v uint32) {
	var b [4]byte
	ne.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

// begin opens a nested attribute; raw appends bytes as they are (a
// family message inside a nest).
func (m *nlMsg) begin(typ uint16) {
	m.nests = append(m.nests, len(m.b))
	m.attr(typ, nil)
}

func (m *nlMsg) raw(b []byte) { m.b = append(m.b, b...); m.pad() }

func (m *nlMsg) end() {
	start := m.nests[len(m.nests)-1]
	m.nests = m.nests[:len(m.nests)-1]
	ne.PutUint16(m.b[start:], uint16(len(m.b)-start))
}

// ifinfomsg of the given interface index (0: none).
func ifinfomsg(index int32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	ne.PutUint32(b[4:], uint32(index))
	return b
}

// do sends the request on a new NETLINK_ROUTE socket and returns the
// kernel's answer (an errno on failure).
func (m *nlMsg) do() error {
	ne.PutUint32(m.b[0:], uint32(len(m.b)))
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(fd, m.b, 0, sa); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for i := 0; i < 8; i++ { // the ack comes first; bounded anyway
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink reply: %w", err)
		}
		for _, r := range msgs {
			if r.Header.Type == unix.NLMSG_ERROR && len(r.Data) >= 4 {
				if errno := int32(ne.Uint32(r.Data[:4])); errno != 0 {
					return unix.Errno(-errno)
				}
				return nil
			}
		}
	}
	return errors.New("netlink: no acknowledgement")
}

// createVeth creates the pair host ↔ peer, the peer directly in the
// network namespace of pid.
func createVeth(host, peer string, pid int) error {
	m := newNLMsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, ifinfomsg(0))
	m.str(unix.IFLA_IFNAME, host)
	m.begin(unix.IFLA_LINKINFO)
	m.str(unix.IFLA_INFO_KIND, "veth")
	m.begin(unix.IFLA_INFO_DATA)
	m.begin(1) // VETH_INFO_PEER: an ifinfomsg, then the peer's attributes
	m.raw(ifinfomsg(0))
	m.str(unix.IFLA_IFNAME, peer)
	m.u32(unix.IFLA_NET_NS_PID, uint32(pid))
	m.end()
	m.end()
	m.end()
	return m.do()
}

// addAddr4 gives interface index the address a/bits.
func addAddr4(index int32, a [4]byte, bits int) error {
	fam := make([]byte, unix.SizeofIfAddrmsg)
	fam[0] = unix.AF_INET
	fam[1] = byte(bits)
	ne.PutUint32(fam[4:], uint32(index))
	m := newNLMsg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, fam)
	m.attr(unix.IFA_LOCAL, a[:])
	m.attr(unix.IFA_ADDRESS, a[:])
	return m.do()
}

// setUp brings interface index up.
func setUp(index int32) error {
	fam := ifinfomsg(index)
	ne.PutUint32(fam[8:], unix.IFF_UP)  // ifi_flags
	ne.PutUint32(fam[12:], unix.IFF_UP) // ifi_change
	return newNLMsg(unix.RTM_NEWLINK, 0, fam).do()
}

// deleteLink deletes the interface called name.
func deleteLink(name string) error {
	m := newNLMsg(unix.RTM_DELLINK, 0, ifinfomsg(0))
	m.str(unix.IFLA_IFNAME, name)
	return m.do()
}

// ifIndex returns the index of the interface called name.
func ifIndex(name string) (int32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int32(ifr.Uint32()), nil
}
