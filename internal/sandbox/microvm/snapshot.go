package microvm

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/vm/qemu"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

// Snapshot cold starts.
//
// A guest is the same until it is handed its function: it boots, mounts
// the root image, loads its modules, opens the channel, writes Ready and
// waits for the host's Hello (vmchan). The first full boot of a kind —
// VM size (MemoryMB + GuestOverheadMB), and the interpreter when Warmups
// has one for the sandbox's Command (its warm-up runs first, so that the
// interpreter's files are in the saved page cache) — saves that waiting
// guest (QMP "migrate" to a file, then "cont") and goes on to become its
// sandbox. Every later sandbox of that kind starts QEMU with -incoming
// from the file: the guest resumes inside its read of the Hello, and from
// there a
// restored guest and a booted one are the same (the Hello sets the clock
// and reseeds the RNG; the function's files, environment and command
// arrive on the channel after it).
//
//	Create ─► snapshot of this kind? ─yes─► restore ─ok──────────────► Hello ─► Ack ─► streams, files, Start
//	               │ no                        │ fails: QEMU exits (corrupt,
//	               │                           │ stale) or no Ack in RestoreTimeout;
//	               │                           │ logged, file removed
//	               ▼                           ▼
//	          full boot ─► Ready ─► (no snapshot yet: [Warm ─► Ready], save, resume) ─► Hello ─► Ack ─► ...
//
// Snapshot files live in ImageDir/snapshots, named by the image digest
// (kernel, initramfs with the init, root image, QEMU, launch settings,
// warm-ups) and the kind; New removes those of other digests.

// DefaultWarmups start Python and Node once, loading the modules Flint's
// runtime clients (internal/runtimes/clients) import (under TCG this cut
// a restored Python cold start by ~0.35 s, a Node one by ~0.2 s:
// BenchmarkColdStartRuntime).
var DefaultWarmups = map[string][]string{
	"/usr/bin/python3": {"/usr/bin/python3", "-c", "import http.client, importlib, json, logging, os, sys, time, traceback"},
	"/usr/bin/node":    {"/usr/bin/node", "-e", "require('http'); require('fs'); require('path'); require('util'); require('stream'); require('url')"},
}

// snapshotKind says which snapshot serves a sandbox: the plain one of
// its VM size, or that size's for its interpreter (with a warm-up).
type snapshotKind struct {
	mem  int      // VM MiB
	name string   // "" (plain) or the interpreter's base name
	warm []string // the warm-up to run before saving, or nil
}

func (d *Driver) snapshotKind(spec *sandbox.Spec) snapshotKind {
	k := snapshotKind{mem: spec.MemoryMB + d.cfg.GuestOverheadMB}
	if argv := d.cfg.Warmups[spec.Command[0]]; len(argv) > 0 {
		k.name, k.warm = filepath.Base(spec.Command[0]), argv
	}
	return k
}

func (k snapshotKind) String() string {
	s := strconv.Itoa(k.mem) + "m"
	if k.name != "" {
		s += "-" + k.name
	}
	return s
}

// snapshotStore names the snapshot files and makes sure that one full
// boot at a time saves the snapshot of a size. Safe for concurrent use.
type snapshotStore struct {
	dir    string // ImageDir/snapshots
	digest string // the image's

	mu     sync.Mutex      // guards making
	making map[string]bool // kinds whose snapshot a boot is saving
}

func newSnapshotStore(dir, digest string) (*snapshotStore, error) {
	st := &snapshotStore{dir: dir, digest: digest, making: map[string]bool{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), digest+"-") || strings.HasSuffix(e.Name(), ".part") {
			// Another image's (invalid), or left half-written by a crash.
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return st, nil
}

// path is the snapshot file of kind k.
func (st *snapshotStore) path(k snapshotKind) string {
	return filepath.Join(st.dir, st.digest+"-"+k.String()+".state")
}

// claim reports whether the caller should save the snapshot of k (none
// exists and no one else is saving it); then it must call release.
func (st *snapshotStore) claim(k snapshotKind) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.making[k.String()] {
		return false
	}
	if _, err := os.Stat(st.path(k)); err == nil {
		return false
	}
	st.making[k.String()] = true
	return true
}

func (st *snapshotStore) release(k snapshotKind) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.making, k.String())
}

// vmConfig is the QEMU configuration of s's VM, started through its
// jail (paths are the jail's): the same for a boot and a restore (a
// restore must match the saved machine), but for extra and files.
func (d *Driver) vmConfig(s *Sandbox, memMiB int, files []*os.File, extra ...string) qemu.Config {
	return qemu.Config{
		Binary: d.qemu, Kernel: jailKernel, Initrd: jailInitrd, Wrap: s.jail.wrap(s.dir), ExtraFiles: files,
		MemoryMiB: memMiB, CPUs: vcpus(s.spec.MemoryMB), Accel: d.accel, TCGCacheMiB: max(0, d.tcgCacheMiB()),
		Cmdline: guestCmdline, Console: s.console, Stderr: s.console,
		ExtraArgs: append(append([]string{
			"-device", "virtio-serial-device",
			"-chardev", "socket,id=flint,path=" + jailVMDir + "/ch.sock,server=on,wait=off",
			"-device", "virtserialport,chardev=flint,name=" + vmchan.PortName,
			"-drive", "file=" + jailRootfs + ",if=none,id=root,format=raw,readonly=on",
			"-device", "virtio-blk-device,drive=root",
		}, qemuSandbox...), extra...),
	}
}

// startVM starts QEMU for s and lets the jail helper run it in the VM's
// cgroup.
func (d *Driver) startVM(s *Sandbox, c qemu.Config) error {
	var err error
	s.vm, err = qemu.Start(c)
	if err != nil {
		return err
	}
	if err := s.jail.started(s.vm.Pid()); err != nil {
		select { // the helper failed: its message is on QEMU's stderr
		case <-s.vm.Done():
		case <-time.After(time.Second):
		}
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(s.console.String()))
	}
	return nil
}

func (s *Sandbox) sock() string { return filepath.Join(s.dir, "ch.sock") }

// launch starts s's VM and completes the handshake: by restoring the
// snapshot of its kind when there is one, else, or when the restore
// fails, by a full boot (which saves the snapshot when there is none).
// It returns the channel's connection, ready for yamux.
func (d *Driver) launch(ctx context.Context, s *Sandbox, log *slog.Logger) (net.Conn, error) {
	kind := d.snapshotKind(&s.spec)
	if d.snaps != nil {
		snap := d.snaps.path(kind)
		if _, err := os.Stat(snap); err == nil {
			t0 := time.Now()
			conn, err := d.restore(ctx, s, kind.mem, snap)
			if err == nil {
				s.restored = true
				log.Debug("microvm: restored from snapshot", "took", time.Since(t0))
				return conn, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			log.Warn("microvm: snapshot restore failed; cold start by a full boot, and a new snapshot", "snapshot", snap, "err", err)
			os.Remove(snap)
		}
	}
	return d.boot(ctx, s, kind, log)
}

// restore starts QEMU from the snapshot (passed as a file descriptor:
// the jailed QEMU sees no path to it and may not spawn a reader) and
// sends the Hello.
func (d *Driver) restore(ctx context.Context, s *Sandbox, mem int, snap string) (_ net.Conn, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.RestoreTimeout)
	defer cancel()
	f, err := os.Open(snap)
	if err != nil {
		return nil, err
	}
	defer f.Close() // QEMU has its own copy once started
	defer func() {
		if err != nil {
			if s.vm != nil {
				s.vm.Kill()
				s.vm = nil
			}
			s.jail.restart()
			os.Remove(s.sock())
			s.console.reset()
		}
	}()
	if err := d.startVM(s, d.vmConfig(s, mem, []*os.File{f}, qemu.RestoreArgs(3)...)); err != nil {
		return nil, err
	}
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.exchange(ctx, conn, func() error { return hello(conn) }); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// boot starts QEMU with a full boot, waits for the guest's Ready, saves
// the snapshot of its kind if there is none (after the kind's warm-up),
// and sends the Hello.
func (d *Driver) boot(ctx context.Context, s *Sandbox, kind snapshotKind, log *slog.Logger) (_ net.Conn, err error) {
	mem := kind.mem
	var extra []string
	if d.snaps != nil {
		extra = []string{"-chardev", "socket,id=qmp,path=" + jailVMDir + "/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control"}
	}
	if err := d.startVM(s, d.vmConfig(s, mem, nil, extra...)); err != nil {
		return nil, err
	}
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	if err := s.exchange(ctx, conn, func() error { return expect(conn, vmchan.Ready) }); err != nil {
		return nil, fmt.Errorf("wait for the booted guest: %w", err)
	}
	if d.snaps != nil && d.snaps.claim(kind) {
		t0 := time.Now()
		// A failed warm-up leaves the channel in an unknown state: the
		// cold start fails. A failed save leaves a running guest.
		if err := d.warmUp(ctx, s, conn, kind); err != nil {
			d.snaps.release(kind)
			return nil, fmt.Errorf("warm-up before the snapshot: %w", err)
		}
		err := d.saveSnapshot(ctx, s, d.snaps.path(kind))
		d.snaps.release(kind)
		switch {
		case err != nil:
			log.Warn("microvm: saving a snapshot failed; these cold starts stay full boots", "snapshot", kind.String(), "err", err)
		default:
			log.Info("microvm: snapshot saved", "snapshot", kind.String(), "took", time.Since(t0), "file", d.snaps.path(kind))
		}
	}
	if err := s.exchange(ctx, conn, func() error { return hello(conn) }); err != nil {
		return nil, err
	}
	return conn, nil
}

// warmUp has the guest run kind's warm-up, if any, and waits for its
// Ready.
func (d *Driver) warmUp(ctx context.Context, s *Sandbox, conn net.Conn, kind snapshotKind) error {
	if kind.warm == nil {
		return nil
	}
	b, err := vmchan.Warm{Argv: kind.warm, UID: d.cfg.UID, GID: d.cfg.GID}.Marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return s.exchange(ctx, conn, func() error {
		if _, err := conn.Write(b); err != nil {
			return err
		}
		return expect(conn, vmchan.Ready)
	})
}

// saveSnapshot saves the guest to dst and resumes it. The jailed QEMU
// may not spawn a writer nor see the snapshot directory: it migrates to a
// unix socket in its sandbox's directory, and the driver copies the
// stream into dst (written as a .part file, renamed once complete; root's,
// 0644, read by every VMM through an fd).
func (d *Driver) saveSnapshot(ctx context.Context, s *Sandbox, dst string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sock := filepath.Join(s.dir, "save.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := os.Chown(sock, s.jail.uid, s.jail.gid); err != nil {
		return err
	}
	part := dst + ".part"
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(part) // a no-op once renamed
	copied := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			copied <- err
			return
		}
		defer c.Close()
		// A plain copy: os.File's ReadFrom would splice through a pipe
		// that Go then keeps in a pool (two descriptors for the process's
		// lifetime).
		_, err = io.Copy(struct{ io.Writer }{out}, c)
		copied <- err
	}()
	q, err := qemu.DialQMP(ctx, filepath.Join(s.dir, "qmp.sock"))
	if err != nil {
		out.Close()
		return err
	}
	defer q.Close()
	if err := q.SaveState(ctx, "unix:"+jailVMDir+"/save.sock", true); err != nil {
		// Whatever failed, the guest must run on as the sandbox.
		_, _ = q.Execute(context.Background(), "cont", nil)
		ln.Close()
		out.Close()
		return err
	}
	select {
	case err = <-copied: // QEMU closes the stream once the migration completed
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the saved state: %w", err)
	}
	return os.Rename(part, dst)
}

// dial connects to the channel's socket (QEMU creates it at start-up).
func (s *Sandbox) dial(ctx context.Context) (net.Conn, error) {
	for {
		conn, err := net.Dial("unix", s.sock())
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.vm.Done():
			return nil, fmt.Errorf("QEMU exited: %s", strings.TrimSpace(s.console.String()))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// exchange runs f (reads and writes on conn) until it returns, ctx ends
// or QEMU exits; in the last two cases it closes conn.
func (s *Sandbox) exchange(ctx context.Context, conn net.Conn, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		conn.Close()
		<-done
		return ctx.Err()
	case <-s.vm.Done():
		conn.Close()
		<-done
		return fmt.Errorf("QEMU exited: %s", strings.TrimSpace(s.console.String()))
	}
}

// hello runs the Hello/Ack exchanges: each Hello carries the host's
// clock and a fresh seed (see vmchan's hello.go for why twice).
func hello(conn net.Conn) error {
	for range vmchan.Hellos {
		h := vmchan.Hello{UnixNano: time.Now().UnixNano()}
		if _, err := rand.Read(h.Seed[:]); err != nil {
			return err
		}
		if _, err := conn.Write(h.Marshal()); err != nil {
			return fmt.Errorf("send hello: %w", err)
		}
		if err := expect(conn, vmchan.Ack); err != nil {
			return err
		}
	}
	return nil
}

// expect reads exactly len(want) bytes from r and checks them.
func expect(r io.Reader, want string) error {
	b := make([]byte, len(want))
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read %q from the guest: %w", strings.TrimSpace(want), err)
	}
	if string(b) != want {
		return fmt.Errorf("the guest sent %q, want %q", b, want)
	}
	return nil
}
