// Command probe is a hostile aws-lambda-go function used by Flint's
// security end-to-end tests (e2e/security_test.go). The event's "action"
// picks an attack; the reply says what each attempt got: "ok" when it
// worked, else the errno name (EPERM, ENOENT...) or the error text.
//
// It is built with CGO_ENABLED=0. Its own binary doubles as the helper
// processes it starts: run with a first argument of "child-..." it is a
// sleeper, a spinner or a whoami instead of a Lambda runtime.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"golang.org/x/sys/unix"
)

// Event is what the tests send.
type Event struct {
	Action  string   `json:"action"`
	Paths   []string `json:"paths"`   // files to read (hostfiles, hunt)
	Write   []string `json:"write"`   // files to write to (hostfiles)
	Addrs   []string `json:"addrs"`   // host:port to connect to (connect)
	Pids    []int    `json:"pids"`    // extra pids to signal (kill)
	MaxPid  int      `json:"maxPid"`  // kill pids 1..MaxPid
	Secret  string   `json:"secret"`  // what to write (secret-write) or look for (hunt)
	MB      int      `json:"mb"`      // membomb, fill-tmp
	N       int      `json:"n"`       // forkbomb; listen: the port
	Ms      int      `json:"ms"`      // cpu
	Nonce   string   `json:"nonce"`   // spin: marks the spinners' argv
	Content string   `json:"content"` // tmp-write
}

// Reply is what the probe found out.
type Reply struct {
	Instance string            `json:"instance"`
	Results  map[string]string `json:"results"`
	Found    []string          `json:"found,omitempty"` // hunt: where the secret was seen
	Count    int               `json:"count"`
	Value    float64           `json:"value"`
	Env      []string          `json:"env,omitempty"`
	InitFDs  []string          `json:"initFds,omitempty"`
	FDs      []string          `json:"fds,omitempty"`
	Status   map[string]string `json:"status,omitempty"`
	Mounts   []string          `json:"mounts,omitempty"`
}

// instance tells sandboxes apart (pids do not: each has its own pid ns).
var instance = func() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

// initFDs are the descriptors open when the process started, listed with
// raw system calls so that the Go runtime's own (netpoller) descriptors are
// not opened first.
var initFDs = listFDs()

func listFDs() []string {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return []string{"error: " + res(err)}
	}
	defer unix.Close(dfd)
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil || n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if name == strconv.Itoa(dfd) {
				continue
			}
			lbuf := make([]byte, 256)
			ln, _ := unix.Readlink("/proc/self/fd/"+name, lbuf)
			out = append(out, name+" -> "+string(lbuf[:max(ln, 0)]))
		}
	}
	return out
}

// res renders an attempt's outcome.
func res(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

func errnoRes(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return res(e)
}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "child-") {
		child(os.Args[1:])
		return
	}
	lambda.Start(handle)
}

// child is the helper-process mode.
func child(args []string) {
	switch args[0] {
	case "child-sleep":
		time.Sleep(10 * time.Minute)
	case "child-int80":
		fmt.Println(int64(int80(20, 0, 0, 0)))
	case "child-whoami":
		fmt.Printf("%d %d\n", os.Geteuid(), os.Getegid())
	case "child-spin":
		// The first of a double fork: start a detached spinner, exit.
		exe, _ := os.Executable()
		p, err := os.StartProcess(exe, []string{exe, "child-spin2", args[1]}, &os.ProcAttr{
			Sys: &syscall.SysProcAttr{Setsid: true},
		})
		if err == nil {
			p.Release()
		}
	case "child-spin2":
		signalIgnoreAll()
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
		}
	}
}

// signalIgnoreAll ignores every catchable signal.
func signalIgnoreAll() {
	for s := 1; s < 32; s++ {
		if s != int(syscall.SIGKILL) && s != int(syscall.SIGSTOP) {
			signal.Ignore(syscall.Signal(s))
		}
	}
}

func handle(ctx context.Context, ev Event) (*Reply, error) {
	r := &Reply{Instance: instance, Results: map[string]string{}}
	switch ev.Action {
	case "identity":
		identity(r)
	case "hostfiles":
		hostFiles(r, ev)
	case "tmp-write":
		r.Results["write"] = res(os.WriteFile("/tmp/flint-probe-tmp", []byte(ev.Content), 0o600))
	case "secret-write":
		r.Results["write"] = res(os.WriteFile("/tmp/flint-secret", []byte(ev.Secret), 0o600))
		r.Results["/dev/shm"] = res(os.WriteFile("/dev/shm/flint-secret", []byte(ev.Secret), 0o600))
		_, err := unix.SysvShmGet(shmKey, 4096, unix.IPC_CREAT|0o600)
		r.Results["sysv shm"] = res(err)
		r.Results["abstract socket"] = res(listenAbstract())
	case "tmp-read":
		b, err := os.ReadFile("/tmp/flint-probe-tmp")
		r.Results["read"] = res(err)
		r.Results["content"] = string(b)
	case "hunt":
		hunt(r, ev)
	case "kill":
		kill(r, ev)
	case "syscalls":
		syscalls(r)
	case "connect":
		for _, a := range ev.Addrs {
			network, addr := "tcp", a
			if u, ok := strings.CutPrefix(a, "unix:"); ok {
				network, addr = "unix", u
			}
			c, err := net.DialTimeout(network, addr, time.Second)
			if err == nil {
				c.Close()
			}
			r.Results[a] = res(err)
		}
	case "forkbomb":
		forkBomb(r, ev.N)
	case "membomb":
		memBomb(ev.MB)
	case "fill-tmp":
		path := "/tmp/fill"
		if len(ev.Paths) > 0 {
			path = ev.Paths[0]
		}
		fillTmp(r, path, ev.MB)
	case "spin":
		spin(ev.Nonce)
	case "fds":
		exhaustFDs(r)
	case "suid":
		suid(r)
	case "abi":
		abi(r)
	case "apiflood":
		apiFlood(r, ev.N, ev.Ms)
	case "cpu":
		cpu(r, ev.Ms)
	case "masks":
		masks(r)
	case "listen":
		listenAll(r, ev.N)
	default:
		return nil, fmt.Errorf("unknown action %q", ev.Action)
	}
	return r, nil
}

func identity(r *Reply) {
	r.Results["uid"] = strconv.Itoa(os.Getuid())
	r.Results["euid"] = strconv.Itoa(os.Geteuid())
	r.Results["gid"] = strconv.Itoa(os.Getgid())
	groups, _ := os.Getgroups()
	r.Results["groups"] = fmt.Sprint(groups)
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	r.Results["nofile"] = fmt.Sprintf("%d/%d", lim.Cur, lim.Max)
	r.Results["stream"] = os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")
	r.Env = os.Environ()
	r.InitFDs = initFDs
	r.FDs = listFDs()
	r.Status = map[string]string{}
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp") {
			r.Status[k] = strings.TrimSpace(v)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	r.Mounts = strings.Split(strings.TrimSpace(string(mi)), "\n")
}
