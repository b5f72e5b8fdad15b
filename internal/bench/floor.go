package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The floor: the least any emulator speaking Lambda's Runtime API over
// HTTP does per invocation. ServeFloor hands each Invoke's payload to a
// runtime's pending GET /next and writes back what the runtime posts to
// /response: no logs, limits, accounting, isolation or errors. It runs one
// runtime process per concurrent client, as Lambda's default mode (and
// Flint's) runs one execution environment per concurrent invocation.
// Measured with the same client and bootstrap as Flint and the emulator,
// it bounds what either can reach on the machine in that mode
// (docs/benchmarks.md).

// floorInvocation is one Invoke waiting for a runtime.
type floorInvocation struct {
	id      string
	payload []byte
	reply   chan []byte
}

// ServeFloor runs the minimal emulator: Invoke
// (POST /2015-03-31/functions/NAME/invocations) on addr, the Runtime API
// on a free loopback port, and runtimes processes of bootstrap polling it,
// until ctx ends or a runtime exits. It is `flint bench floor-emulator`,
// which the bench starts as a process of its own.
func ServeFloor(ctx context.Context, addr, bootstrap string, runtimes int) error {
	queue := make(chan *floorInvocation)
	var (
		mu      sync.Mutex
		pending = map[string]*floorInvocation{}
	)
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer api.Close()
	go http.Serve(api, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const prefix = "/2018-06-01/runtime/invocation/"
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		switch {
		case ok && rest == "next":
			var in *floorInvocation
			select {
			case in = <-queue:
			case <-r.Context().Done():
				return
			}
			mu.Lock()
			pending[in.id] = in
			mu.Unlock()
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", in.id)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:function")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
			w.Write(in.payload)
		case ok:
			// ID/response or ID/error: the reply either way.
			id, _, _ := strings.Cut(rest, "/")
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusAccepted)
			mu.Lock()
			in := pending[id]
			delete(pending, id)
			mu.Unlock()
			if in != nil {
				in.reply <- b
			}
		default:
			http.NotFound(w, r)
		}
	}))
	runtimes = max(runtimes, 1)
	exited := make(chan error, runtimes)
	for range runtimes {
		rt := exec.Command(bootstrap)
		rt.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + api.Addr().String(), "_HANDLER=bootstrap",
			"AWS_LAMBDA_FUNCTION_NAME=function", "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024", "AWS_REGION=us-east-1"}
		rt.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		rt.Stdout, rt.Stderr = io.Discard, os.Stderr
		if err := rt.Start(); err != nil {
			return fmt.Errorf("floor emulator: start a runtime: %w", err)
		}
		go func() { exited <- rt.Wait() }()
		defer rt.Process.Kill()
	}
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
		return fmt.Errorf("floor emulator: a runtime exited: %v", err)
	}
}

// floorTarget is the warm target of the minimal emulator: for c clients
// it starts `BIN bench floor-emulator --runtimes c` (bin: the bench's own
// binary) and stops it in cleanup.
func floorTarget(bin, bootstrap string) warmTarget {
	return func(ctx context.Context, clients int) (string, func() *http.Client, func(), error) {
		port, err := freePort()
		if err != nil {
			return "", nil, nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(bin, "bench", "floor-emulator", "--listen", addr, "--runtimes", strconv.Itoa(clients), bootstrap)
		p, err := startProc(cmd, "http://"+addr)
		if err != nil {
			return "", nil, nil, fmt.Errorf("start the floor emulator: %w", err)
		}
		if err := p.waitListening(); err != nil {
			p.stop()
			return "", nil, nil, fmt.Errorf("floor emulator: %w", err)
		}
		return invokeURL(p.base, "function"), func() *http.Client { return newHTTPClient(1) }, p.stop, nil
	}
}
