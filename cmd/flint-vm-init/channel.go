//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/flintdev/flint/internal/vm/vmchan"
)

// openPort waits for the virtio-serial port named vmchan.PortName and
// opens it.
func openPort(timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == vmchan.PortName {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if f, err := os.OpenFile(dev, os.O_RDWR, 0); err == nil {
					return f, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port %q after %v", vmchan.PortName, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// control is the control stream; send is safe for concurrent use.
type control struct {
	mu  sync.Mutex // guards enc
	enc *json.Encoder
}

func (c *control) send(ev vmchan.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.enc.Encode(ev)
}

// serve runs one sandbox: the handshake, then it accepts the host's
// streams, unpacks the function's files and starts the runtime on Start,
// and returns once the runtime's exit is reported.
func serve(port *os.File) error {
	if err := handshake(port); err != nil {
		return err
	}
	sess, err := yamux.Server(port, vmchan.Config())
	if err != nil {
		return err
	}
	var ctlStream, outStream, filesStream net.Conn
	for ctlStream == nil || outStream == nil || filesStream == nil {
		s, err := sess.Accept()
		if err != nil {
			return fmt.Errorf("accept the host's streams: %w", err)
		}
		var tag [1]byte
		if _, err := io.ReadFull(s, tag[:]); err != nil {
			return fmt.Errorf("read a stream tag: %w", err)
		}
		switch tag[0] {
		case vmchan.TagControl:
			ctlStream = s
		case vmchan.TagOutput:
			outStream = s
		case vmchan.TagFiles:
			filesStream = s
		default:
			return fmt.Errorf("unknown stream tag %q", tag[0])
		}
	}
	ctl := &control{enc: json.NewEncoder(ctlStream)}
	dec := json.NewDecoder(bufio.NewReader(ctlStream))
	var start vmchan.Start
	if err := dec.Decode(&start); err != nil {
		return fmt.Errorf("read Start: %w", err)
	}
	err = unpackFiles(filesStream, start.ReadOnly)
	filesStream.Close()
	var rt *runtime
	if err == nil {
		rt, err = startRuntime(start, sess, outStream)
	}
	if err != nil {
		ctl.send(vmchan.Event{Type: "error", Error: err.Error()})
		time.Sleep(time.Second) // let the host read it before the reboot
		return err
	}
	ctl.send(vmchan.Event{Type: "started"})
	go func() {
		for {
			var req vmchan.Request
			if err := dec.Decode(&req); err != nil {
				return
			}
			switch req.Op {
			case "sync":
				rt.out.sync(req.Seq)
			case "stats":
				ev := rt.stats()
				ev.Type, ev.Seq = "stats", req.Seq
				ctl.send(ev)
			}
		}
	}()
	ev := rt.wait()
	ctl.send(ev)
	// The host ends the VM once it has the exit; reboot ourselves if it
	// does not.
	time.Sleep(30 * time.Second)
	return errors.New("the host did not stop the VM after the runtime's exit")
}

// proxyRuntimeAPI accepts the runtime's connections to the Runtime API in
// the guest and carries each over a new stream to the host.
func proxyRuntimeAPI(ln net.Listener, sess *yamux.Session) {
	const maxConns = 128 // the host serves fewer at once; more only queue
	sem := make(chan struct{}, maxConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close()
			continue
		}
		go func() {
			defer func() { <-sem }()
			defer c.Close()
			s, err := sess.OpenStream()
			if err != nil {
				return
			}
			defer s.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(s, c)
				s.Close() // FIN: the request is complete
				close(done)
			}()
			io.Copy(c, s)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}
