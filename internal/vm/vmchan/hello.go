package vmchan

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Before yamux starts, host and guest exchange three fixed-size messages
// on the raw port. They are what lets a snapshot of an idle guest be
// restored many times, each copy with its own identity:
//
//	host   Warm     optional, before a snapshot is saved: run a program once
//	guest  Ready    (an interpreter) to fill the page cache; Ready again.
//
//	guest  Ready    once booted, before waiting for its Hello. A write on a
//	                virtio-serial port blocks until the host's end is
//	                connected, so the host reads it as soon as it connects.
//	                A snapshot is taken after the host read Ready: a guest
//	                restored from it is already waiting for its Hello and
//	                sends no Ready.
//	host   Hello    the host's wall clock and a fresh random seed: the guest
//	                sets its clock and reseeds its RNG (a restored guest's
//	                clock and RNG state are those of the snapshot).
//	guest  Ack      the Hello is applied.
//	host   Hello    again, once the guest has answered: the first one may
//	guest  Ack      have waited in the socket while QEMU loaded the snapshot
//	                (~0.1 s under TCG), so its clock is late; this one's is
//	                not. Then yamux starts on both ends.
//
// Then the host opens the control, output and files streams.
const (
	Ready = "FLINT-READY\n"
	Ack   = "FLINT-ACK\n"
)

// Hellos is the number of Hello/Ack exchanges.
const Hellos = 2

// SeedSize is the number of random bytes a Hello carries.
const SeedSize = 64

// HelloSize is the size of a marshalled Hello.
const HelloSize = 4 + 8 + SeedSize

var helloMagic = [4]byte{'F', 'H', 'L', '1'}

// Hello is the host's first message to a guest.
type Hello struct {
	// UnixNano is the host's wall clock when it sent the Hello.
	UnixNano int64
	// Seed is mixed into the guest's RNG, which is then reseeded.
	Seed [SeedSize]byte
}

// Marshal encodes h in HelloSize bytes.
func (h Hello) Marshal() []byte {
	b := make([]byte, 0, HelloSize)
	b = append(b, helloMagic[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.UnixNano))
	return append(b, h.Seed[:]...)
}

// ParseHello decodes a Hello.
func ParseHello(b []byte) (Hello, error) {
	var h Hello
	if len(b) != HelloSize {
		return h, fmt.Errorf("vmchan: hello of %d bytes, want %d", len(b), HelloSize)
	}
	if [4]byte(b[:4]) != helloMagic {
		return h, errors.New("vmchan: not a hello")
	}
	h.UnixNano = int64(binary.BigEndian.Uint64(b[4:12]))
	copy(h.Seed[:], b[12:])
	return h, nil
}

// Warm asks a booted guest, before its snapshot is saved, to run Argv once
// as UID:GID and wait for it, so that what the program reads (an
// interpreter, its libraries and modules) is in the guest's page cache in
// the snapshot. The guest answers with Ready again. A restored guest never
// gets one.
type Warm struct {
	Argv     []string
	UID, GID int
}

var warmMagic = [4]byte{'F', 'W', 'M', '1'}

// maxWarm bounds a marshalled Warm's payload.
const maxWarm = 64 << 10

// Marshal encodes w: the magic, a 4-byte length, the JSON.
func (w Warm) Marshal() ([]byte, error) {
	p, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if len(p) > maxWarm {
		return nil, fmt.Errorf("vmchan: warm-up of %d bytes exceeds %d", len(p), maxWarm)
	}
	b := append(warmMagic[:], binary.BigEndian.AppendUint32(nil, uint32(len(p)))...)
	return append(b, p...), nil
}

// ReadHostMessage reads the host's next handshake message from r: a Hello
// or a Warm.
func ReadHostMessage(r io.Reader) (any, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, err
	}
	switch magic {
	case helloMagic:
		b := make([]byte, HelloSize)
		copy(b, magic[:])
		if _, err := io.ReadFull(r, b[4:]); err != nil {
			return nil, err
		}
		return ParseHello(b)
	case warmMagic:
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, err
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > maxWarm {
			return nil, fmt.Errorf("vmchan: warm-up of %d bytes exceeds %d", size, maxWarm)
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		var w Warm
		if err := json.Unmarshal(p, &w); err != nil {
			return nil, fmt.Errorf("vmchan: warm-up: %w", err)
		}
		return w, nil
	}
	return nil, fmt.Errorf("vmchan: unknown handshake message %q", magic[:])
}
