package nsinit

import (
	"errors"
	"syscall"
)

// The messages between host and init are a plain binary encoding rather
// than JSON: decoding JSON needs encoding/json, whose imports (reflect,
// os, fmt...) would make this package initialise after most of the
// Flint binary (see early.go). Each message is one SOCK_SEQPACKET packet:
// a kind byte, then the fields in declaration order, each an unsigned
// integer (8 bytes, little-endian) or a byte string (its length as an
// integer, then its bytes); a list is its length, then its elements.

// Message kinds (the first byte of a packet).
const (
	kindConfig byte = 'C'
	kindClaim  byte = 'L'
	kindReady  byte = 'R'
)

// maxList bounds the element count of any decoded list (a corrupt length
// must not make the decoder allocate gigabytes).
const maxList = 1 << 16

var errShort = errors.New("truncated message")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) {
	e.b = append(e.b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24),
		byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

func (e *encoder) int(v int) { e.uint(uint64(int64(v))) }

func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) strs(l []string) {
	e.uint(uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errShort
		return 0
	}
	b := d.b
	v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	d.b = d.b[8:]
	return v
}

func (d *decoder) int() int { return int(int64(d.uint())) }

// count reads a list length, each element taking at least min bytes.
func (d *decoder) count(min int) int {
	n := d.uint()
	if d.err == nil && (n > maxList || n*uint64(min) > uint64(len(d.b))) {
		d.err = errShort
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.count(8)
	var l []string
	for i := 0; i < n && d.err == nil; i++ {
		l = append(l, d.str())
	}
	return l
}

// start checks the kind byte of message b.
func (d *decoder) start(b []byte, kind byte) {
	if len(b) == 0 || b[0] != kind {
		d.err = errors.New("unexpected message kind")
		return
	}
	d.b = b[1:]
}

// end reports the decoding error, or trailing bytes.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes in message")
	}
	return d.err
}

// MarshalBinary encodes c for the init.
func (c *Config) MarshalBinary() ([]byte, error) {
	e := &encoder{b: []byte{kindConfig}}
	e.str(c.ID)
	e.str(c.Root)
	e.str(c.Hostname)
	e.uint(uint64(len(c.Host)))
	for _, h := range c.Host {
		e.str(h.Path)
		e.str(h.Link)
	}
	e.uint(uint64(len(c.EtcFiles)))
	for name, data := range c.EtcFiles {
		e.str(name)
		e.str(data)
	}
	e.strs(c.EtcBinds)
	e.strs(c.DevNodes)
	e.int(c.UID)
	e.int(c.GID)
	e.uint(c.NoFile)
	e.int(c.ListenPort)
	e.uint(uint64(len(c.Seccomp)))
	for _, f := range c.Seccomp {
		e.uint(uint64(f.Code) | uint64(f.Jt)<<16 | uint64(f.Jf)<<24 | uint64(f.K)<<32)
	}
	if c.Net == nil {
		e.uint(0)
	} else {
		n := c.Net
		e.uint(1)
		e.str(n.Iface)
		e.str(string(n.Addr[:]))
		e.int(n.PrefixLen)
		e.str(string(n.Gateway[:]))
	}
	return e.b, nil
}

// UnmarshalBinary decodes a Config encoded by MarshalBinary.
func (c *Config) UnmarshalBinary(b []byte) error {
	var d decoder
	d.start(b, kindConfig)
	*c = Config{ID: d.str(), Root: d.str(), Hostname: d.str()}
	for i, n := 0, d.count(16); i < n && d.err == nil; i++ {
		c.Host = append(c.Host, HostPath{Path: d.str(), Link: d.str()})
	}
	if n := d.count(16); n > 0 {
		c.EtcFiles = make(map[string]string, n)
		for i := 0; i < n && d.err == nil; i++ {
			name := d.str()
			c.EtcFiles[name] = d.str()
		}
	}
	c.EtcBinds = d.strs()
	c.DevNodes = d.strs()
	c.UID, c.GID = d.int(), d.int()
	c.NoFile = d.uint()
	c.ListenPort = d.int()
	if n := d.count(8); n > 0 {
		c.Seccomp = make([]syscall.SockFilter, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			v := d.uint()
			c.Seccomp = append(c.Seccomp, syscall.SockFilter{Code: uint16(v), Jt: uint8(v >> 16), Jf: uint8(v >> 24), K: uint32(v >> 32)})
		}
	}
	switch d.uint() {
	case 0:
	case 1:
		n := &Net{Iface: d.str()}
		addr := d.str()
		n.PrefixLen = d.int()
		gw := d.str()
		if d.err == nil && (len(addr) != 4 || len(gw) != 4) {
			d.err = errors.New("bad IPv4 address")
		}
		copy(n.Addr[:], addr)
		copy(n.Gateway[:], gw)
		c.Net = n
	default:
		if d.err == nil {
			d.err = errors.New("bad network flag")
		}
	}
	return d.end()
}

// MarshalBinary encodes c for the init.
func (c *Claim) MarshalBinary() ([]byte, error) {
	e := &encoder{b: []byte{kindClaim}}
	e.strs(c.Mounts)
	e.int(c.TmpMB)
	e.strs(c.Command)
	e.strs(c.Env)
	return e.b, nil
}

// UnmarshalBinary decodes a Claim encoded by MarshalBinary.
func (c *Claim) UnmarshalBinary(b []byte) error {
	var d decoder
	d.start(b, kindClaim)
	*c = Claim{Mounts: d.strs(), TmpMB: d.int()}
	c.Command = d.strs()
	c.Env = d.strs()
	return d.end()
}

// MarshalBinary encodes r for the host.
func (r *Ready) MarshalBinary() ([]byte, error) {
	e := &encoder{b: []byte{kindReady}}
	e.str(r.Error)
	e.str(r.Step)
	e.uint(uint64(len(r.Timings)))
	for _, t := range r.Timings {
		e.str(t.Step)
		e.uint(uint64(t.Nanos))
	}
	return e.b, nil
}

// UnmarshalBinary decodes a Ready encoded by MarshalBinary.
func (r *Ready) UnmarshalBinary(b []byte) error {
	var d decoder
	d.start(b, kindReady)
	*r = Ready{Error: d.str(), Step: d.str()}
	for i, n := 0, d.count(16); i < n && d.err == nil; i++ {
		r.Timings = append(r.Timings, Timing{Step: d.str(), Nanos: int64(d.uint())})
	}
	return d.end()
}
