package vmchan

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Before yamux starts, host and guest exchange three fixed-size messages
// on the raw port. They are what lets a snapshot of an idle guest be
// restored many times, each copy with its own identity:
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
