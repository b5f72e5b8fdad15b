package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/pierrec/lz4/v4"
)

// lz4LegacyMagic starts an LZ4 "legacy" stream (lz4 -l), the format of an
// LZ4-compressed bzImage's payload.
const lz4LegacyMagic = 0x184C2102

// maxLegacyBlock is the size of every block of a legacy stream but the
// last, decompressed.
const maxLegacyBlock = 8 << 20

// maxVmlinux bounds the uncompressed kernel (Debian's is about 50 MiB).
const maxVmlinux = 512 << 20

// ExtractVmlinux returns the uncompressed ELF kernel (vmlinux) inside the
// bzImage bz, whose payload must be LZ4-compressed (Debian's x86 kernels
// are). A vmlinux built with CONFIG_PVH boots directly at its PVH entry
// point, skipping the bzImage's own decompression: the fastest boot under
// software emulation.
func ExtractVmlinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("kernel: not a bzImage (no HdrS setup header)")
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	pm := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if pm+off+n > len(bz) || n < 8 {
		return nil, fmt.Errorf("kernel: bzImage payload (%d bytes at %d) outside the file (%d bytes)", n, pm+off, len(bz))
	}
	payload := bz[pm+off : pm+off+n]
	if binary.LittleEndian.Uint32(payload) != lz4LegacyMagic {
		return nil, fmt.Errorf("kernel: bzImage payload is not LZ4 (magic %#x)", binary.LittleEndian.Uint32(payload))
	}
	// The build appends the uncompressed size after the stream.
	want := int(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	if want > maxVmlinux {
		return nil, fmt.Errorf("kernel: bzImage claims a %d-byte kernel", want)
	}
	src := payload[4 : len(payload)-4]
	out := make([]byte, 0, want)
	buf := make([]byte, maxLegacyBlock)
	for len(src) >= 4 {
		size := int(binary.LittleEndian.Uint32(src))
		src = src[4:]
		if size == lz4LegacyMagic { // a concatenated stream
			continue
		}
		if size > len(src) {
			return nil, fmt.Errorf("kernel: LZ4 block of %d bytes past the payload's end", size)
		}
		m, err := lz4.UncompressBlock(src[:size], buf)
		if err != nil {
			return nil, fmt.Errorf("kernel: decompress bzImage payload: %w", err)
		}
		out = append(out, buf[:m]...)
		src = src[size:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("kernel: payload decompressed to %d bytes, want %d", len(out), want)
	}
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, fmt.Errorf("kernel: decompressed payload is not an ELF file")
	}
	return out, nil
}

// extractVmlinuxFile writes the vmlinux inside the bzImage file bzPath to
// out.
func extractVmlinuxFile(bzPath, out string) error {
	bz, err := os.ReadFile(bzPath)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	vm, err := ExtractVmlinux(bz)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, vm, 0o644); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	return nil
}
