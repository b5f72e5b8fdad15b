package egress

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// installTable (re)creates the egress table inet <Name> in one nftables
// transaction: a table a crashed run left behind is replaced atomically.
// In nft's syntax, with <if> the egress interface and <name>-* the host
// ends of the sandbox links:
//
//	table inet <name> {
//	  set deny { type ipv4_addr; flags interval; auto-merge; elements = { <Deny>, <Pool> } }
//	  # Nothing a sandbox sends may reach the host itself: every address
//	  # of the host (the gateway of the link included) is local delivery.
//	  chain input { type filter hook input priority -10; policy accept; iifname "<name>-*" drop; }
//	  chain forward { type filter hook forward priority -10; policy accept;
//	    iifname "<name>-*" jump from_sandbox
//	    oifname "<name>-*" ct state established,related accept
//	    oifname "<name>-*" drop
//	  }
//	  chain from_sandbox {
//	    meta nfproto ipv6 drop
//	    ip saddr != <Pool> drop
//	    ip daddr @deny drop
//	    oifname != "<if>" drop
//	  }
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr <Pool> oifname "<if>" masquerade
//	  }
//	}
func installTable(c Config) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: c.Name}
	conn.AddTable(t) // so that the delete finds one
	conn.DelTable(t)
	conn.AddTable(t)

	deny := &nftables.Set{Table: t, Name: "deny", KeyType: nftables.TypeIPAddr, Interval: true, AutoMerge: true}
	if err := conn.AddSet(deny, intervalElements(append(slices.Clone(c.Deny), c.Pool))); err != nil {
		return err
	}

	accept := nftables.ChainPolicyAccept
	input := conn.AddChain(&nftables.Chain{Table: t, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(-10), Policy: &accept})
	forward := conn.AddChain(&nftables.Chain{Table: t, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10), Policy: &accept})
	fromSandbox := conn.AddChain(&nftables.Chain{Table: t, Name: "from_sandbox"})
	postrouting := conn.AddChain(&nftables.Chain{Table: t, Name: "postrouting", Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})

	links := []byte(c.Name + "-") // "<name>-*": a prefix match
	out := ifnameExact(c.Interface)
	rule := func(ch *nftables.Chain, parts ...[]expr.Any) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(parts...)})
	}
	drop := verdict(expr.VerdictDrop, "")

	rule(input, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, links), drop)

	rule(forward, ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, links), verdict(expr.VerdictJump, fromSandbox.Name))
	rule(forward, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, links), ctEstablishedOrRelated(), verdict(expr.VerdictAccept, ""))
	rule(forward, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, links), drop)

	rule(fromSandbox, nfproto(unix.NFPROTO_IPV6), drop)
	rule(fromSandbox, nfproto(unix.NFPROTO_IPV4), ipv4Prefix(ipv4Saddr, expr.CmpOpNeq, c.Pool), drop)
	rule(fromSandbox, nfproto(unix.NFPROTO_IPV4), ipv4InSet(ipv4Daddr, deny), drop)
	rule(fromSandbox, ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, out), drop)

	rule(postrouting, nfproto(unix.NFPROTO_IPV4), ipv4Prefix(ipv4Saddr, expr.CmpOpEq, c.Pool),
		ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, out), []expr.Any{&expr.Masq{}})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// deleteTable removes the table inet name.
func deleteTable(name string) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// Offsets in the IPv4 header.
const (
	ipv4Saddr = 12
	ipv4Daddr = 16
)

func verdict(k expr.VerdictKind, chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: k, Chain: chain}}
}

// nfproto matches the packet's family (meta nfproto), as nft puts before
// any ip match in an inet table.
func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// ifname compares the input or output interface's name with name: all of
// it when name is ifnameExact's, a prefix otherwise.
func ifname(key expr.MetaKey, op expr.CmpOp, name []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: name},
	}
}

// ifnameExact is an interface name as the kernel compares it whole:
// NUL-padded to IFNAMSIZ.
func ifnameExact(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// ctEstablishedOrRelated matches "ct state established,related".
func ctEstablishedOrRelated() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// ipv4Prefix compares the address at offset of the IPv4 header, masked to
// p's length, with p.
func ipv4Prefix(offset uint32, op expr.CmpOp, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ipv4InSet matches when the address at offset of the IPv4 header is in s.
func ipv4InSet(offset uint32, s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// intervalElements are the elements of an interval set holding the
// IPv4 prefixes ps: overlapping and adjacent ones merged first (the
// kernel refuses overlaps; nft's auto-merge does the same), each range
// a start element and an interval-end element just past its last
// address (none for a range that reaches 255.255.255.255).
func intervalElements(ps []netip.Prefix) []nftables.SetElement {
	type span struct{ lo, hi uint64 } // [lo, hi)
	spans := make([]span, 0, len(ps))
	for _, p := range ps {
		lo := uint64(binary.BigEndian.Uint32(p.Masked().Addr().AsSlice()))
		spans = append(spans, span{lo, lo + 1<<(32-p.Bits())})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && s.lo <= merged[n-1].hi {
			merged[n-1].hi = max(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	key := func(v uint64) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	var els []nftables.SetElement
	for _, s := range merged {
		els = append(els, nftables.SetElement{Key: key(s.lo)})
		if s.hi < 1<<32 {
			els = append(els, nftables.SetElement{Key: key(s.hi), IntervalEnd: true})
		}
	}
	return els
}
