package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Stats is a cgroup's resource usage.
type Stats struct {
	MaxMemoryBytes uint64
	OOMKills       uint64
}

// statFiles are the memory controller files Stats reads, opened once by
// Create so that each read is a single pread(2) at offset 0 (cgroup files
// are regenerated on every read from offset 0) instead of
// open+read+close, the cost that dominated a warm invocation's stats.
type statFiles struct {
	peakFD, eventsFD     int
	peakPath, eventsPath string
	// buf is the read buffer, reused (a stack buffer would escape
	// through syscall.Pread and cost an allocation per read).
	buf [statBufSize]byte
}

// statBufSize bounds one read of a stat file; every file read here is far
// smaller (memory.events is about 60 bytes). A read that fills the buffer
// is redone by path in full.
const statBufSize = 512

// statNames returns the base names of the peak memory file and of the file
// holding the oom_kill counter, with the peak file to fall back to when
// the first is missing ("" for none).
func (g *Group) statNames() (peak, peakFallback, events string) {
	if g.version == V2 {
		// memory.peak needs kernel 5.19.
		return "memory.peak", "memory.current", "memory.events"
	}
	return "memory.max_usage_in_bytes", "", "memory.oom_control"
}

// openStatFiles opens the stat files; on error none stays open.
func (g *Group) openStatFiles() error {
	peak, fallback, events := g.statNames()
	f := &statFiles{peakPath: filepath.Join(g.memDir, peak), eventsPath: filepath.Join(g.memDir, events)}
	var err error
	f.peakFD, err = openRead(f.peakPath)
	if errors.Is(err, os.ErrNotExist) && fallback != "" {
		f.peakPath = filepath.Join(g.memDir, fallback)
		f.peakFD, err = openRead(f.peakPath)
	}
	if err != nil {
		return err
	}
	if f.eventsFD, err = openRead(f.eventsPath); err != nil {
		syscall.Close(f.peakFD)
		return err
	}
	g.mu.Lock()
	g.files = f
	g.mu.Unlock()
	return nil
}

func openRead(path string) (int, error) {
	for range 100 { // EINTR
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			if err != nil {
				return -1, &os.PathError{Op: "open", Path: path, Err: err}
			}
			return fd, nil
		}
	}
	return -1, &os.PathError{Op: "open", Path: path, Err: syscall.EINTR}
}

// closeStatFiles closes the stat files, if open; Stats reads by path
// afterwards.
func (g *Group) closeStatFiles() {
	g.mu.Lock()
	f := g.files
	g.files = nil
	g.mu.Unlock()
	if f != nil {
		syscall.Close(f.peakFD)
		syscall.Close(f.eventsFD)
	}
}

// Stats reads peak memory use and the OOM kill count. It is the same as
// Peak then OOMKills, and allocates nothing while the group is live.
func (g *Group) Stats() (Stats, error) {
	peak, err := g.Peak()
	if err != nil {
		return Stats{}, err
	}
	oom, err := g.OOMKills()
	if err != nil {
		return Stats{MaxMemoryBytes: peak}, err
	}
	return Stats{MaxMemoryBytes: peak, OOMKills: oom}, nil
}

// Peak reads the peak memory use in bytes: memory.max_usage_in_bytes on
// v1 (since Create or the last ResetPeak), memory.peak on v2 (since Create;
// memory.current on kernels before 5.19, which lack it).
func (g *Group) Peak() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var v uint64
	var err error
	if f := g.files; f != nil {
		v, err = readStat(f.peakFD, f.peakPath, "", f.buf[:])
	} else {
		peak, fallback, _ := g.statNames()
		v, err = readStat(-1, filepath.Join(g.memDir, peak), "", nil)
		if errors.Is(err, os.ErrNotExist) && fallback != "" {
			v, err = readStat(-1, filepath.Join(g.memDir, fallback), "", nil)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", g.id, err)
	}
	return v, nil
}

// OOMKills reads how many processes of the group the kernel's OOM killer
// killed (the oom_kill counter of memory.oom_control on v1, memory.events
// on v2; 0 on kernels without it).
func (g *Group) OOMKills() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var v uint64
	var err error
	if f := g.files; f != nil {
		v, err = readStat(f.eventsFD, f.eventsPath, "oom_kill", f.buf[:])
	} else {
		_, _, events := g.statNames()
		v, err = readStat(-1, filepath.Join(g.memDir, events), "oom_kill", nil)
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", g.id, err)
	}
	return v, nil
}

// readStat reads the single value of the file at path (key "") or the
// value of key in it, through fd into buf when fd is open (>= 0), else by
// path. Through fd it does not allocate unless it fails.
func readStat(fd int, path, key string, buf []byte) (uint64, error) {
	if fd >= 0 {
		n, err := pread0(fd, buf)
		if err != nil {
			return 0, &os.PathError{Op: "pread", Path: path, Err: err}
		}
		if n < len(buf) {
			return parseStat(buf[:n], path, key)
		}
		// Possibly cut short: read it whole below.
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseStat(b, path, key)
}

// pread0 reads from offset 0 of fd.
func pread0(fd int, buf []byte) (int, error) {
	for range 100 { // EINTR
		n, err := syscall.Pread(fd, buf, 0)
		if err != syscall.EINTR {
			return n, err
		}
	}
	return 0, syscall.EINTR
}

func parseStat(b []byte, path, key string) (uint64, error) {
	if key != "" {
		v, err := parseKey(b, key)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		return v, nil
	}
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return ^uint64(0), nil
	}
	v, ok := parseUint(b)
	if !ok {
		return 0, fmt.Errorf("parse %s: not a number: %q", path, b)
	}
	return v, nil
}

// ParseKey returns the value of key in the contents of a flat-keyed cgroup
// file such as memory.events ("key value" per line). A missing key is 0.
func ParseKey(contents, key string) (uint64, error) {
	return parseKey([]byte(contents), key)
}

// parseKey is ParseKey on bytes, without allocating unless it fails: the
// first line whose first space-separated field (after trimming the line)
// is key gives the value, the rest of the line trimmed.
func parseKey(contents []byte, key string) (uint64, error) {
	for len(contents) > 0 {
		line := contents
		if i := bytes.IndexByte(contents, '\n'); i >= 0 {
			line, contents = contents[:i], contents[i+1:]
		} else {
			contents = nil
		}
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte{' '})
		if !ok || string(k) != key {
			continue
		}
		n, ok := parseUint(bytes.TrimSpace(v))
		if !ok {
			return 0, fmt.Errorf("parse %s: not a number: %q", key, v)
		}
		return n, nil
	}
	return 0, nil
}

// parseUint parses a non-empty string of decimal digits that fits in a
// uint64 (what strconv.ParseUint(s, 10, 64) accepts), without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
