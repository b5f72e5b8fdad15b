package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/flintdev/flint/internal/sandbox"
	"github.com/flintdev/flint/internal/vm/qemu"
	"github.com/flintdev/flint/internal/vm/vmchan"
)

// Sandbox is one microVM. Its life:
//
//	Create ──► running ──(runtime exits: guest reports "exit")──► VM killed ──► exited
//	              │                                                             │
//	              └─────(Destroy, or QEMU dies)──► VM killed ──► exited ◄───────┘
//	                                                              │
//	                                                       Destroy: gone
//
// "exited" means Done is closed: QEMU has ended, the channel is closed and
// every output byte the guest sent has been written to Spec.Output.
type Sandbox struct {
	id   string
	spec sandbox.Spec
	d    *Driver
	dir  string

	// Set during Create, read-only afterwards.
	vm      *qemu.VM
	sess    *yamux.Session
	ctl     net.Conn // control stream
	out     net.Conn // output stream
	files   net.Conn // files stream (closed once sent)
	srv     *http.Server
	console *tail
	jail    *vmmJail // the VMM's uid and cgroup; closed once QEMU ended
	// restored: the VM was restored from a snapshot, not booted.
	restored bool

	done    chan struct{} // closed by monitor once exited
	outDone chan struct{} // closed when readOutput ends
	exited  chan struct{} // closed when the guest reported the runtime's exit

	ctlMu sync.Mutex // serialises writes to ctl

	mu          sync.Mutex // guards the fields below
	err         error      // why the sandbox exited (set before done closes)
	exitEv      *vmchan.Event
	destroyed   bool
	seq         uint64                       // last request number
	synced      uint64                       // last sync acknowledged
	syncChanged chan struct{}                // closed and replaced when synced grows
	stats       map[uint64]chan vmchan.Event // pending stats requests
	lastStats   sandbox.Stats

	destroyOnce sync.Once
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

// ID implements sandbox.Sandbox.
func (s *Sandbox) ID() string { return s.id }

// Pid is the QEMU process's id on the host.
func (s *Sandbox) Pid() int { return s.vm.Pid() }

// Restored reports whether the sandbox's VM was restored from a
// snapshot (rather than booted).
func (s *Sandbox) Restored() bool { return s.restored }

// Done implements sandbox.Sandbox.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Err implements sandbox.Sandbox.
func (s *Sandbox) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// readOutput copies output frames to Spec.Output and records sync
// acknowledgements, until the guest closes the stream or the channel ends.
func (s *Sandbox) readOutput() {
	defer close(s.outDone)
	buf := make([]byte, vmchan.MaxFrame)
	for {
		kind, p, err := vmchan.ReadFrame(s.out, buf)
		if err != nil {
			return
		}
		switch kind {
		case vmchan.FrameData:
			if s.spec.Output != nil {
				_, _ = s.spec.Output.Write(p)
			}
		case vmchan.FrameSync:
			seq, err := vmchan.SyncSeq(p)
			if err != nil {
				return
			}
			s.mu.Lock()
			if seq > s.synced {
				s.synced = seq
				close(s.syncChanged)
				s.syncChanged = make(chan struct{})
			}
			s.mu.Unlock()
		}
	}
}

// readControl handles the guest's events after "started".
func (s *Sandbox) readControl(dec *json.Decoder) {
	for {
		var ev vmchan.Event
		if err := dec.Decode(&ev); err != nil {
			return
		}
		switch ev.Type {
		case "stats":
			s.mu.Lock()
			ch := s.stats[ev.Seq]
			delete(s.stats, ev.Seq)
			s.lastStats = sandbox.Stats{MaxMemoryBytes: ev.MaxMemoryBytes, OOMKills: ev.OOMKills}
			s.mu.Unlock()
			if ch != nil {
				ch <- ev
			}
		case "exit":
			s.mu.Lock()
			s.exitEv = &ev
			s.lastStats = sandbox.Stats{MaxMemoryBytes: ev.MaxMemoryBytes, OOMKills: ev.OOMKills}
			s.mu.Unlock()
			close(s.exited)
			// Every output byte precedes the exit event on the channel;
			// let readOutput deliver them, then end the VM.
			select {
			case <-s.outDone:
			case <-time.After(5 * time.Second):
			}
			s.vm.Kill()
			return
		}
	}
}

// monitor waits for QEMU to end, then closes the channel and marks the
// sandbox exited.
func (s *Sandbox) monitor(slot bool) {
	<-s.vm.Done()
	if err := s.jail.close(); err != nil {
		s.d.cfg.Logger.Warn("microvm: VMM cgroup", "sandbox", s.id, "err", err)
	}
	s.sess.Close()
	s.srv.Close()
	<-s.outDone
	if slot {
		<-s.d.slots
	}
	s.mu.Lock()
	switch {
	case s.exitEv != nil && s.exitEv.OOMKills > 0:
		s.err = fmt.Errorf("sandbox %s: runtime exited (%s): %w", s.id, exitDesc(s.exitEv), sandbox.ErrOutOfMemory)
	case s.exitEv != nil:
		s.err = fmt.Errorf("sandbox %s: runtime exited (%s)", s.id, exitDesc(s.exitEv))
	case s.destroyed:
		s.err = fmt.Errorf("sandbox %s: destroyed", s.id)
	default:
		s.err = fmt.Errorf("sandbox %s: the VM stopped (%v): %s", s.id, s.vm.Wait(), s.console.String())
	}
	for seq, ch := range s.stats {
		close(ch)
		delete(s.stats, seq)
	}
	s.mu.Unlock()
	close(s.done)
}

func exitDesc(ev *vmchan.Event) string {
	switch {
	case ev.Error != "":
		return ev.Error
	case ev.Signal != "":
		return "signal: " + ev.Signal
	}
	return fmt.Sprintf("exit status %d", ev.Code)
}

// abort undoes a failed Create.
func (s *Sandbox) abort(slot bool) {
	if s.vm != nil {
		s.vm.Kill()
	}
	if err := s.jail.close(); err != nil {
		s.d.cfg.Logger.Warn("microvm: VMM cgroup", "sandbox", s.id, "err", err)
	}
	if s.sess != nil {
		s.sess.Close() // readOutput has not started: it starts with the runtime
	}
	if slot {
		<-s.d.slots
	}
	os.RemoveAll(s.dir)
}

// request sends a control request.
func (s *Sandbox) request(op string) (uint64, error) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	b, _ := json.Marshal(vmchan.Request{Op: op, Seq: seq})
	_, err := s.ctl.Write(append(b, '\n'))
	return seq, err
}

// SyncOutput implements sandbox.Sandbox: the guest forwards what its
// output pipe holds, then acknowledges on the output stream.
func (s *Sandbox) SyncOutput(ctx context.Context) error {
	select {
	case <-s.done:
		return nil // readOutput has delivered everything
	default:
	}
	seq, err := s.request("sync")
	if err != nil {
		<-s.done // the channel is gone: the VM is ending
		return nil
	}
	for {
		s.mu.Lock()
		ok, ch := s.synced >= seq, s.syncChanged
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-s.outDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("microvm: sync output of %s: %w", s.id, ctx.Err())
		}
	}
}

// Stats implements sandbox.Sandbox: the runtime cgroup's figures in the
// guest, asked for while it runs (waiting at most a few seconds), else the
// last known.
func (s *Sandbox) Stats() (sandbox.Stats, error) {
	select {
	case <-s.exited:
	case <-s.done:
	default:
		ch := make(chan vmchan.Event, 1)
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.stats[seq] = ch
		s.mu.Unlock()
		s.ctlMu.Lock()
		b, _ := json.Marshal(vmchan.Request{Op: "stats", Seq: seq})
		_, err := s.ctl.Write(append(b, '\n'))
		s.ctlMu.Unlock()
		if err == nil {
			select {
			case <-ch:
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
		s.mu.Lock()
		delete(s.stats, seq)
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastStats, nil
}

// Destroy implements sandbox.Sandbox: it kills QEMU (everything in the
// sandbox lives in that one process) and removes the sandbox's directory.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.destroyOnce.Do(func() {
		s.mu.Lock()
		s.destroyed = true
		s.mu.Unlock()
		s.vm.Kill()
	})
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("microvm: destroy %s: %w", s.id, ctx.Err())
	}
	if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("microvm: destroy %s: %w", s.id, err)
	}
	return nil
}

// tail keeps the last max bytes written to it (the guest's console, for
// error messages).
type tail struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
