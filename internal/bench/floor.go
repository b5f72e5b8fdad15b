package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The floor: the least any emulator speaking Lambda's Runtime API over
// HTTP does per invocation. ServeFloor hands each Invoke's payload to the
// runtime's pending GET /next and writes back what the runtime posts to
// /response: no logs, limits, accounting, isolation or errors, one
// invocation at a time. Measured with the same client and bootstrap as
// Flint and the emulator, its sequential latency bounds what either can
// reach on the machine (docs/benchmarks.md).

// floorInvocation is one Invoke waiting for the runtime.
type floorInvocation struct {
	id      string
	payload []byte
	reply   chan []byte
}

// ServeFloor runs the minimal emulator: Invoke
// (POST /2015-03-31/functions/NAME/invocations) on addr, the Runtime API
// on a free loopback port, and bootstrap as its runtime, until ctx ends or
// the runtime exits. It is `flint bench floor-emulator`, which the bench
// starts as a process of its own.
func ServeFloor(ctx context.Context, addr, bootstrap string) error {
	queue := make(chan *floorInvocation)
	var pending atomic.Pointer[floorInvocation]
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer api.Close()
	go http.Serve(api, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/invocation/next") {
			var in *floorInvocation
			select {
			case in = <-queue:
			case <-r.Context().Done():
				return
			}
			pending.Store(in)
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", in.id)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:function")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
			w.Write(in.payload)
			return
		}
		// .../invocation/ID/response (or /error: the reply either way).
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		if in := pending.Load(); in != nil {
			in.reply <- b
		}
	}))
	rt := exec.Command(bootstrap)
	rt.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + api.Addr().String(), "_HANDLER=bootstrap",
		"AWS_LAMBDA_FUNCTION_NAME=function", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024", "AWS_REGION=us-east-1"}
	rt.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	rt.Stdout, rt.Stderr = io.Discard, os.Stderr
	if err := rt.Start(); err != nil {
		return fmt.Errorf("floor emulator: start the runtime: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- rt.Wait() }()
	defer rt.Process.Kill()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var seq atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		in := &floorInvocation{id: strconv.FormatInt(seq.Add(1), 10), payload: b, reply: make(chan []byte, 1)}
		select {
		case queue <- in:
		case <-r.Context().Done():
			return
		}
		select {
		case out := <-in.reply:
			w.Header().Set("Content-Type", "application/json")
			w.Write(out)
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		return fmt.Errorf("floor emulator: the runtime exited: %v", err)
	}
}

// floorTarget is the warm target of the minimal emulator, for one client:
// it starts `BIN bench floor-emulator` (bin: the bench's own binary) and
// stops it in cleanup.
func floorTarget(bin, bootstrap string) warmTarget {
	return func(ctx context.Context, clients int) (string, func() *http.Client, func(), error) {
		if clients != 1 {
			return "", nil, nil, errors.New("the floor emulator serves one invocation at a time")
		}
		port, err := freePort()
		if err != nil {
			return "", nil, nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin, "bench", "floor-emulator", "--listen", addr, bootstrap)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return "", nil, nil, fmt.Errorf("start the floor emulator: %w", err)
		}
		p := &rieProc{cmd: cmd, base: "http://" + addr, done: make(chan struct{})}
		go func() { cmd.Wait(); close(p.done) }()
		if err := p.waitListening(); err != nil {
			p.stop()
			return "", nil, nil, fmt.Errorf("floor emulator: %w", err)
		}
		return invokeURL(p.base, "function"), func() *http.Client { return newHTTPClient(1) }, p.stop, nil
	}
}
