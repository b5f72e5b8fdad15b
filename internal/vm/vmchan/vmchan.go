// Package vmchan is the protocol between the microVM sandbox driver (host)
// and Flint's init inside the guest (cmd/flint-vm-init), spoken over one
// virtio-serial port (named PortName) multiplexed with yamux.
//
// Streams, in the order they are opened:
//
//	host opens  control   JSON lines both ways: the host sends a Start, then
//	                      Sync/Stats requests; the guest answers Started,
//	                      Stats, and finally Exit.
//	host opens  output    guest → host frames (FrameData, FrameSync): the
//	                      runtime's stdout and stderr, merged as written,
//	                      and the acknowledgements of Sync requests.
//	host opens  files     host → guest: a tar archive of the function's
//	                      directories (code, runtime client, layers).
//	guest opens one stream per TCP connection a process in the guest makes
//	            to the Runtime API (127.0.0.1:RuntimeAPIPort there); the
//	            host serves HTTP on it.
//
// Before yamux, the raw port carries the handshake (hello.go).
//
// Each host-opened stream starts with one tag byte (TagControl,
// TagOutput) so that the guest can tell them apart whatever order yamux
// delivers them in. Nothing else crosses the channel: the guest has no
// network device.
package vmchan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// PortName is the virtio-serial port's name (/sys/class/virtio-ports/*/name).
const PortName = "flint.0"

// RuntimeAPIPort is where the guest's init listens for the Runtime API,
// on 127.0.0.1 as on Lambda.
const RuntimeAPIPort = 9001

// Tags of host-opened streams.
const (
	TagControl byte = 'C'
	TagOutput  byte = 'O'
	// TagFiles: a tar archive of the function's directories (entries
	// under the Start's ReadOnly directories, without the leading "/"),
	// which the guest unpacks before starting the runtime.
	TagFiles byte = 'F'
)

// Start asks the guest to start the runtime.
type Start struct {
	Command []string // argv; Command[0] is an absolute path in the guest
	Env     []string // complete environment; the init adds AWS_LAMBDA_RUNTIME_API
	Dir     string   // working directory (/var/task)
	UID     int      // the runtime's uid and gid (never 0)
	GID     int
	// MemoryMB limits the runtime's cgroup; PidsMax its tasks; TmpMB
	// sizes /tmp.
	MemoryMB, PidsMax, TmpMB int
	// ReadOnly are directories (/var/task, /var/runtime, /opt) that the
	// init makes read-only bind mounts of themselves.
	ReadOnly []string
}

// Request is a host → guest control message after Start.
type Request struct {
	Op  string // "sync" or "stats"
	Seq uint64
}

// Event is a guest → host control message.
type Event struct {
	// Type is "started", "error" (Start failed: Error says why), "stats"
	// (answer to Request "stats" with the same Seq) or "exit".
	Type  string
	Seq   uint64 `json:",omitempty"`
	Error string `json:",omitempty"`
	// Exit: the runtime's exit code, or the signal that killed it.
	Code   int    `json:",omitempty"`
	Signal string `json:",omitempty"`
	// Stats (for "stats" and "exit"): from the runtime's cgroup.
	MaxMemoryBytes uint64 `json:",omitempty"`
	OOMKills       uint64 `json:",omitempty"`
}

// Output frame kinds.
const (
	FrameData byte = 'D' // payload: output bytes
	FrameSync byte = 'S' // payload: 8-byte big-endian Seq of a sync request
)

// MaxFrame bounds a frame's payload.
const MaxFrame = 64 << 10

// WriteFrame writes one output frame.
func WriteFrame(w io.Writer, kind byte, p []byte) error {
	if len(p) > MaxFrame {
		return fmt.Errorf("vmchan: frame of %d bytes exceeds %d", len(p), MaxFrame)
	}
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(append(h[:], p...)); err != nil {
		return err
	}
	return nil
}

// ReadFrame reads one output frame into buf (which must hold MaxFrame
// bytes) and returns its kind and payload.
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrame || int(n) > len(buf) {
		return 0, nil, fmt.Errorf("vmchan: frame of %d bytes exceeds %d", n, MaxFrame)
	}
	if h[0] != FrameData && h[0] != FrameSync {
		return 0, nil, fmt.Errorf("vmchan: unknown frame kind %q", h[0])
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], buf[:n], nil
}

// SyncFrame is the payload of a FrameSync for seq.
func SyncFrame(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// SyncSeq parses a FrameSync payload.
func SyncSeq(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("vmchan: sync frame of %d bytes", len(p))
	}
	return binary.BigEndian.Uint64(p), nil
}

// Config is the yamux configuration both ends use: no keep-alives (a guest
// under software emulation may stall for seconds; the host watches QEMU
// itself) and yamux's own log off.
func Config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}
