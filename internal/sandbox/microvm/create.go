package microvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flintdev/flint/internal/sandbox/egress"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/net/netutil"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

// Create implements sandbox.Driver. A cold start is these steps, each
// timed in the debug log:
//
//	slot       wait for a free VM slot (Config.MaxVMs)
//	jail       take a uid and gid for the VMM (jail.go)
//	dir        make the sandbox's directory (the VMM's)
//	cgroup     the VMM's cgroup: memory and pids
//	launch     restore QEMU from the snapshot of the sandbox's kind, or
//	           boot it (snapshot.go), through the jail helper, in the
//	           cgroup; the handshake (clock, RNG seed)
//	connect    yamux on the channel, open the streams
//	files      send Start and the function's directories
//	start      wait for the guest to start the runtime
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
	if err := step("dir", func() error {
		if err := os.Mkdir(s.dir, 0o700); err != nil {
			return err
		}
		// The VMM's own: it makes the channel's socket there.
		return os.Chown(s.dir, s.jail.uid, s.jail.gid)
	}); err != nil {
		return nil, err
	}
	if err := step("cgroup", func() error {
		return s.jail.cgroup(&spec, spec.MemoryMB+d.cfg.GuestOverheadMB, d.img.initrd)
	}); err != nil {
		return nil, err
	}
	if d.egress != nil {
		if err := step("egress", func() (err error) {
			s.link, s.tap, err = d.egress.AttachTap(ctx)
			return err
		}); err != nil {
			return nil, err
		}
	}
	var conn net.Conn
	if err := step("launch", func() (err error) {
		conn, err = d.launch(ctx, s, log)
		return err
	}); err != nil {
		return nil, err
	}
	if err := step("connect", func() error { return s.connect(conn) }); err != nil {
		return nil, err
	}
	dirs := map[string]string{"/var/task": spec.CodeDir, "/var/runtime": spec.RuntimeDir, "/opt": spec.OptDir}
	sent := make(chan error, 1) // the files stream's end
	if err := step("files", func() error {
		// Start first: the guest reads it before the files. The files
		// go on while the guest unpacks them; a guest that fails stops
		// reading and says why on the control stream.
		if err := s.sendStart(readOnlyDirs(dirs)); err != nil {
			return err
		}
		go func() {
			err := writeFiles(s.files, dirs)
			if cerr := s.files.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				err = fmt.Errorf("send the function's files: %w", err)
			}
			sent <- err
		}()
		return nil
	}); err != nil {
		return nil, err
	}
	if err := step("start", func() error { return s.started(ctx, sent) }); err != nil {
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

// connect starts yamux on the channel's connection (after the
// handshake) and opens the control, output and files streams.
func (s *Sandbox) connect(conn net.Conn) error {
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
	if s.out, err = open(vmchan.TagOutput); err != nil {
		return err
	}
	s.files, err = open(vmchan.TagFiles)
	return err
}

// sendStart sends Start, with ro the directories the files stream fills.
func (s *Sandbox) sendStart(ro []string) error {
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
	if l := s.link; l != nil {
		st.Net = &vmchan.Net{Iface: egress.SandboxIface, Addr: l.Addr, Gateway: l.Gateway, PrefixLen: l.PrefixLen,
			ResolvConf: s.d.cfg.Egress.ResolvConf()}
	}
	return json.NewEncoder(s.ctl).Encode(st)
}

// started waits for the guest's answer to Start; sent yields the end of
// the files stream (an error there fails the start).
func (s *Sandbox) started(ctx context.Context, sent <-chan error) error {
	events := make(chan vmchan.Event, 1)
	dec := json.NewDecoder(bufio.NewReader(s.ctl))
	go func() {
		var ev vmchan.Event
		if err := dec.Decode(&ev); err != nil {
			ev = vmchan.Event{Type: "error", Error: "the guest closed the channel: " + err.Error()}
		}
		events <- ev
	}()
	for {
		select {
		case err := <-sent:
			if err != nil {
				return err
			}
			sent = nil
			continue
		case ev := <-events:
			return s.startEvent(ev, dec)
		case <-s.vm.Done():
			return fmt.Errorf("the VM stopped while starting: %s", strings.TrimSpace(s.console.String()))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startEvent handles the guest's answer to Start.
func (s *Sandbox) startEvent(ev vmchan.Event, dec *json.Decoder) error {
	switch ev.Type {
	case "started":
		go s.readOutput()
		go s.readControl(dec)
		return nil
	case "error":
		return errors.New(ev.Error)
	}
	return fmt.Errorf("unexpected first event %q from the guest", ev.Type)
}
