package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RIEModule is the AWS Lambda Runtime Interface Emulator the peer runs;
// the bench installs it into its cache dir (never into go.mod).
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// ensureRIE returns the emulator binary in dir, installing it with
// `go install` when missing.
func ensureRIE(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "aws-lambda-rie")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", RIEModule)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install the runtime interface emulator: %w\n%s", err, b)
	}
	return bin, nil
}

// rieMaxConcurrency is the emulator's AWS_LAMBDA_MAX_CONCURRENCY in its
// concurrent mode (at least; twice the clients when more).
const rieMaxConcurrency = 32

// rie runs the emulator with the bench function's bootstrap.
type rie struct {
	bin       string
	bootstrap string // path of the bench function
	taskDir   string // a dir holding only bootstrap, bind-mounted as /var/task
}

// rieProc is one running emulator.
type rieProc struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
}

// start runs the emulator. conc 0 is its default mode (one runtime, one
// invocation at a time, bootstrap given on the command line);
// conc > 0 sets AWS_LAMBDA_MAX_CONCURRENCY=conc, a mode that reads the
// bootstrap only from /var/runtime, /var/task or /opt: the bench gives it
// a private mount namespace (unshare -m) with a tmpfs on /var and the
// bootstrap's dir bind-mounted at /var/task, so the host is untouched.
func (r *rie) start(conc int) (*rieProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	flags := []string{
		"--runtime-interface-emulator-address", "127.0.0.1:" + strconv.Itoa(port),
		"--runtime-api-address", "127.0.0.1:" + strconv.Itoa(apiPort),
	}
	var cmd *exec.Cmd
	if conc == 0 {
		cmd = exec.Command(r.bin, append(flags, r.bootstrap)...)
	} else {
		script := `mount -t tmpfs flint-bench /var && mkdir /var/task && mount --bind "$0" /var/task && cd /var/task && exec "$@"`
		cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "--", "sh", "-c", script, r.taskDir, r.bin}, flags...)...)
		cmd.Env = append(os.Environ(), "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(conc))
	}
	// Its logs (a few lines per invocation) go to /dev/null.
	p, err := startProc(cmd, "http://127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	return p, nil
}

// startProc starts cmd, a peer serving at base, in a process group of its
// own (stop ends the group), killed if the bench dies first.
func startProc(cmd *exec.Cmd, base string) (*rieProc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &rieProc{cmd: cmd, base: base, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitListening dials the emulator until it accepts connections (at most
// 10s).
func (p *rieProc) waitListening() error {
	addr := p.base[len("http://"):]
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return errors.New("emulator exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(500 * time.Microsecond)
	}
	return errors.New("emulator not listening within 10s")
}

// stop ends the emulator's process group and waits for it.
func (p *rieProc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// warmTarget starts the emulator for c clients in its default mode
// (concurrent false: one runtime, one invocation at a time; only for one
// client) or with AWS_LAMBDA_MAX_CONCURRENCY=max(32, 2×c) (one runtime
// process with that many /next pollers; 32 as in issue 13's runs). With
// exactly c pollers the emulator answers Runtime.Unavailable whenever a
// request beats a poller back to /next (it does not queue), hence more.
func (r *rie) warmTarget(concurrent bool) warmTarget {
	return func(ctx context.Context, clients int) (string, func() *http.Client, func(), error) {
		conc := 0
		if concurrent {
			conc = max(rieMaxConcurrency, 2*clients)
		}
		p, err := r.start(conc)
		if err != nil {
			return "", nil, nil, err
		}
		if err := p.waitListening(); err != nil {
			p.stop()
			return "", nil, nil, err
		}
		return invokeURL(p.base, "function"), func() *http.Client { return newHTTPClient(1) }, p.stop, nil
	}
}

// runRIECold measures the emulator's own cold path n times: start the
// emulator process (default mode) and time until the first Invoke's
// response, split into "emulator start" (until it accepts connections)
// and "init+first invoke".
func (r *rie) runCold(ctx context.Context, n int) (*Cold, error) {
	c := &Cold{Mode: "start the emulator process (default mode) + first Invoke",
		Steps: []string{"emulator start", "init+first invoke"}}
	var totals, starts, firsts []time.Duration
	for range n {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t0 := time.Now()
		p, err := r.start(0)
		if err != nil {
			return nil, err
		}
		err = p.waitListening()
		listening := time.Now()
		if err == nil {
			inv := &invoker{url: invokeURL(p.base, "function"), hc: newHTTPClient(1)}
			_, err = inv.invoke(ctx, noop)
			inv.hc.CloseIdleConnections()
		}
		end := time.Now()
		p.stop()
		if err != nil {
			c.Errors++
			if c.Errors > n/2+1 {
				return nil, fmt.Errorf("emulator cold: %w", err)
			}
			continue
		}
		totals = append(totals, end.Sub(t0))
		starts = append(starts, listening.Sub(t0))
		firsts = append(firsts, end.Sub(listening))
	}
	c.N = len(totals)
	c.P50, c.P90, c.P99 = percentile(totals, 50), percentile(totals, 90), percentile(totals, 99)
	c.Breakdown = map[string]float64{
		"emulator start":    round3(percentile(starts, 50)),
		"init+first invoke": round3(percentile(firsts, 50)),
	}
	return c, nil
}
