package microvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/net/netutil"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/vm/qemu"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

// Create implements sandbox.Driver. A cold start is these steps, each
// timed in the debug log:
//
//	slot       wait for a free VM slot (Config.MaxVMs)
//	jail       take a uid and gid for the VMM (jail.go)
//	image      write the sandbox's initramfs (base + code layer)
//	cgroup     the VMM's cgroup: memory and pids
//	launch     start QEMU through the jail helper, in the cgroup
//	connect    connect to the channel's unix socket, open the streams
//	start      send Start; the guest boots, mounts, starts the runtime
//	cpu-limit  the VMM's CPU share (the boot ran at full speed)
//
// Any failure kills the VM and removes the sandbox's directory.
func (d *Driver) Create(ctx context.Context, spec sandbox.Spec) (_ sandbox.Sandbox, err error) {
	if err := d.validateSpec(&spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("microvm: create %s: %w", spec.ID, err)
	}
	s := &Sandbox{
		id: spec.ID, spec: spec, d: d, dir: filepath.Join(d.cfg.StateDir, "sb-"+spec.ID),
		done: make(chan struct{}), outDone: make(chan struct{}), exited: make(chan struct{}),
		syncChanged: make(chan struct{}), stats: map[uint64]chan vmchan.Event{},
		console: &tail{max: 16 << 10},
	}
	log := d.cfg.Logger.With("sandbox", spec.ID)
	var slot bool
	defer func() {
		if err != nil {
			s.abort(slot)
			err = fmt.Errorf("microvm: create %s: %w", spec.ID, err)
		}
	}()
	step := func(name string, f func() error) error {
		t0 := time.Now()
		err := f()
		log.Debug("microvm create step", "step", name, "took", time.Since(t0), "err", err)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := step("slot", func() error {
		if d.slots == nil {
			return nil
		}
		select {
		case d.slots <- struct{}{}:
			slot = true
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}); err != nil {
		return nil, err
	}
	if err := step("jail", func() error {
		s.jail, err = d.newJail()
		return err
	}); err != nil {
		return nil, err
	}
	var ro []string
	if err := step("image", func() error {
		if err := os.Mkdir(s.dir, 0o700); err != nil {
			return err
		}
		ro, err = writeInitrd(filepath.Join(s.dir, "initrd"), d.base, map[string]string{
			"/var/task": spec.CodeDir, "/var/runtime": spec.RuntimeDir, "/opt": spec.OptDir,
		})
		if err != nil {
			return err
		}
		// The VMM's own: the initramfs to read, the directory to make
		// the channel's socket in.
		for _, p := range []string{filepath.Join(s.dir, "initrd"), s.dir} {
			if err := os.Chown(p, s.jail.uid, s.jail.gid); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	guestMiB := spec.MemoryMB + d.cfg.GuestOverheadMB
	if err := step("cgroup", func() error {
		return s.jail.cgroup(&spec, guestMiB, filepath.Join(s.dir, "initrd"))
	}); err != nil {
		return nil, err
	}
	sock := filepath.Join(s.dir, "ch.sock")
	if err := step("launch", func() error {
		tcg := max(0, d.tcgCacheMiB())
		s.vm, err = qemu.Start(qemu.Config{
			Binary: d.qemu, Kernel: jailKernel, Initrd: jailVMDir + "/initrd", Wrap: s.jail.wrap(s.dir),
			MemoryMiB: guestMiB, CPUs: vcpus(spec.MemoryMB), Accel: d.accel, TCGCacheMiB: tcg,
			Cmdline: []string{"quiet", "loglevel=1", "rdinit=/init"},
			Console: s.console, Stderr: s.console,
			ExtraArgs: append([]string{
				"-device", "virtio-serial-device",
				"-chardev", "socket,id=flint,path=" + jailVMDir + "/ch.sock,server=on,wait=off",
				"-device", "virtserialport,chardev=flint,name=" + vmchan.PortName,
			}, qemuSandbox...),
		})
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
	}); err != nil {
		return nil, err
	}
	if err := step("connect", func() error { return s.connect(ctx, sock) }); err != nil {
		return nil, err
	}
	if err := step("start", func() error { return s.start(ctx, ro) }); err != nil {
		return nil, err
	}
	if err := step("cpu-limit", s.jail.limitCPU); err != nil {
		return nil, err
	}
	s.srv = &http.Server{Handler: spec.RuntimeAPI, ReadHeaderTimeout: time.Minute}
	go s.srv.Serve(netutil.LimitListener(s.sess, max(d.cfg.MaxAPIConns, spec.RuntimeAPIConns)))
	go s.monitor(slot)
	return s, nil
}

// connect dials the channel's socket (QEMU creates it at start-up) and
// opens the control and output streams.
func (s *Sandbox) connect(ctx context.Context, sock string) error {
	var conn net.Conn
	for {
		var err error
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.vm.Done():
			return fmt.Errorf("QEMU exited: %s", s.console.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	sess, err := yamux.Client(conn, vmchan.Config())
	if err != nil {
		conn.Close()
		return err
	}
	s.sess = sess
	open := func(tag byte) (net.Conn, error) {
		st, err := sess.OpenStream()
		if err != nil {
			return nil, err
		}
		if _, err := st.Write([]byte{tag}); err != nil {
			st.Close()
			return nil, err
		}
		return st, nil
	}
	if s.ctl, err = open(vmchan.TagControl); err != nil {
		return err
	}
	s.out, err = open(vmchan.TagOutput)
	return err
}

// start sends Start and waits for the guest's answer.
func (s *Sandbox) start(ctx context.Context, ro []string) error {
	tmp := s.spec.EphemeralStorageMB
	if tmp == 0 {
		tmp = DefaultEphemeralStorageMB
	}
	st := vmchan.Start{
		Command: s.spec.Command, Env: s.spec.Env, Dir: "/var/task",
		UID: s.d.cfg.UID, GID: s.d.cfg.GID,
		MemoryMB: s.spec.MemoryMB, PidsMax: s.d.cfg.PidsMax, TmpMB: tmp, ReadOnly: ro,
	}
	if st.Env == nil {
		st.Env = []string{}
	}
	if err := json.NewEncoder(s.ctl).Encode(st); err != nil {
		return err
	}
	events := make(chan vmchan.Event, 1)
	dec := json.NewDecoder(bufio.NewReader(s.ctl))
	go func() {
		var ev vmchan.Event
		if err := dec.Decode(&ev); err != nil {
			ev = vmchan.Event{Type: "error", Error: "the guest closed the channel: " + err.Error()}
		}
		events <- ev
	}()
	select {
	case ev := <-events:
		switch ev.Type {
		case "started":
			go s.readOutput()
			go s.readControl(dec)
			return nil
		case "error":
			return errors.New(ev.Error)
		default:
			return fmt.Errorf("unexpected first event %q from the guest", ev.Type)
		}
	case <-s.vm.Done():
		return fmt.Errorf("the VM stopped while starting: %s", strings.TrimSpace(s.console.String()))
	case <-ctx.Done():
		return ctx.Err()
	}
}
