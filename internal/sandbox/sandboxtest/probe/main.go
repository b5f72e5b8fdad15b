// Command probe runs inside a sandbox under test (see package sandboxtest)
// and reports what it can see and do there. It is built with CGO_ENABLED=0
// so that it needs nothing from the sandbox's file system.
//
//	probe report HOSTADDR HOSTFILE  POST a JSON Report to $API/test/report
//	probe get PATH                  GET $API/PATH, print "<status> <body>"
//	probe alloc MB                  allocate and touch MB megabytes, then sleep
//	probe fork N                    start up to N sleeping children, POST the count
//	probe conns N                   open up to N connections to $API, each with
//	                                a GET /test/hold in flight, hold them 1s,
//	                                close them, POST {"opened": n}
//	probe lines N                   write N numbered lines to stdout and stderr
//	                                alternately, POST $API/test/done, then sleep
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Report is what "probe report" finds out.
type Report struct {
	UID, GID, Pid int
	Groups        []int
	Status        map[string]string // selected lines of /proc/self/status
	OpenFDs       []int             // open descriptors other than 0, 1, 2
	Env           []string
	Hostname      string
	Cwd           string
	// Results of attempts: "ok" or the error.
	WriteTask, WriteTmp, WriteRoot, WriteEtc string
	HostFileVisible                          bool
	TmpEntries                               []string // /tmp before writing to it
	TmpMB                                    int64    // /tmp's size (statfs)
	Unshare, UnshareUser, Mount, RawSocket   string
	ConnectHost                              string
	Passwd                                   string
	Kcore                                    string
	// Runtime is /var/runtime/marker's contents; WriteRuntime the result
	// of writing there.
	Runtime, WriteRuntime string
	// Opt is /opt/marker's contents, WriteOpt the result of writing
	// there, OptMount the mount options of /opt (from mountinfo).
	Opt, WriteOpt, OptMount string
	// Syscalls maps system calls a sandbox must refuse to their result.
	Syscalls map[string]string
}

func api(path string) string { return "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + path }

func post(path string, body []byte) {
	for i := 0; i < 50; i++ {
		resp, err := http.Post(api(path), "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
			return
		}
		fmt.Fprintln(os.Stderr, "post:", err)
		time.Sleep(20 * time.Millisecond)
	}
	os.Exit(3)
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe report|get|alloc|fork|lines ...")
		os.Exit(2)
	}
	arg := func(i int) string {
		if len(os.Args) <= i {
			fmt.Fprintln(os.Stderr, "missing argument")
			os.Exit(2)
		}
		return os.Args[i]
	}
	switch os.Args[1] {
	case "report":
		// Look at descriptors before the Go runtime or we open any more.
		fds := openFDs()
		b, _ := json.Marshal(report(fds, arg(2), arg(3)))
		post("/test/report", b)
	case "get":
		resp, err := http.Get(api(arg(2)))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(body))
	case "alloc":
		mb, _ := strconv.Atoi(arg(2))
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
		time.Sleep(time.Hour)
	case "fork":
		n, _ := strconv.Atoi(arg(2))
		started := 0
		var ferr error
		for ; started < n; started++ {
			_, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "600"}, &syscall.ProcAttr{})
			if err != nil {
				ferr = err
				break
			}
		}
		b, _ := json.Marshal(map[string]any{"started": started, "err": result(ferr), "eagain": errors.Is(ferr, syscall.EAGAIN)})
		post("/test/report", b)
		time.Sleep(time.Hour)
	case "conns":
		n, _ := strconv.Atoi(arg(2))
		var conns []net.Conn
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", os.Getenv("AWS_LAMBDA_RUNTIME_API"), scaled(300*time.Millisecond))
			if err != nil {
				break
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "GET /test/hold HTTP/1.1\r\nHost: api\r\n\r\n")
		}
		time.Sleep(time.Second)
		for _, c := range conns {
			c.Close()
		}
		b, _ := json.Marshal(map[string]any{"opened": len(conns)})
		post("/test/report", b)
		time.Sleep(time.Hour)
	case "lines":
		n, _ := strconv.Atoi(arg(2))
		for i := 0; i < n; i++ {
			w := os.Stdout
			if i%2 == 1 {
				w = os.Stderr
			}
			fmt.Fprintf(w, "line %d\n", i)
		}
		post("/test/done", nil)
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

func openFDs() []int {
	var fds []int
	for fd := 3; fd < 1024; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds
}

func report(fds []int, hostAddr, hostFile string) Report {
	r := Report{UID: os.Getuid(), GID: os.Getgid(), Pid: os.Getpid(), OpenFDs: fds, Env: os.Environ()}
	r.Groups, _ = os.Getgroups()
	r.Hostname, _ = os.Hostname()
	r.Cwd, _ = os.Getwd()
	r.Status = map[string]string{}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			switch k {
			case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp":
				if ok {
					r.Status[k] = strings.TrimSpace(v)
				}
			}
		}
	}
	if ents, err := os.ReadDir("/tmp"); err == nil {
		for _, e := range ents {
			r.TmpEntries = append(r.TmpEntries, e.Name())
		}
	}
	var fs unix.Statfs_t
	if unix.Statfs("/tmp", &fs) == nil {
		r.TmpMB = int64(fs.Blocks) * fs.Bsize >> 20
	}
	write := func(p string) string { return result(os.WriteFile(p, []byte("x"), 0o644)) }
	r.WriteTask = write("/var/task/probe-write")
	r.WriteTmp = write("/tmp/probe-write")
	r.WriteRoot = write("/probe-write")
	r.WriteEtc = write("/etc/probe-write")
	_, err := os.Stat(hostFile)
	r.HostFileVisible = err == nil
	r.Unshare = result(unix.Unshare(unix.CLONE_NEWNS))
	r.UnshareUser = result(unix.Unshare(unix.CLONE_NEWUSER))
	r.Mount = result(unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err == nil {
		unix.Close(fd)
	}
	r.RawSocket = result(err)
	c, err := net.DialTimeout("tcp", hostAddr, time.Second)
	if err == nil {
		c.Close()
	}
	r.ConnectHost = result(err)
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		r.Passwd = string(b)
	}
	b, err := os.ReadFile("/proc/kcore")
	r.Kcore = fmt.Sprintf("%d bytes, %v", len(b), err)
	if b, err := os.ReadFile("/var/runtime/marker"); err == nil {
		r.Runtime = string(b)
	}
	r.WriteRuntime = write("/var/runtime/probe-write")
	if b, err := os.ReadFile("/opt/marker"); err == nil {
		r.Opt = string(b)
	}
	r.WriteOpt = write("/opt/probe-write")
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			// id parent major:minor root mountpoint options ...
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/opt" {
				r.OptMount = f[5]
			}
		}
	}
	r.Syscalls = deniedSyscalls()
	return r
}

// deniedSyscalls tries system calls that must fail and reports how they
// failed ("ok" if they did not).
func deniedSyscalls() map[string]string {
	errno := func(e syscall.Errno) string {
		if e == 0 {
			return "ok"
		}
		return e.Error()
	}
	m := map[string]string{}
	_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	m["ptrace"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	m["keyctl"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, 0, 0)
	m["bpf"] = errno(e)
	_, _, e = unix.RawSyscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
	m["perf_event_open"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	m["userfaultfd"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	m["io_uring_setup"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_SETNS, 0, 0, 0)
	m["setns"] = errno(e)
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e == 0 && pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the child, if any
	}
	m["clone(CLONE_NEWUSER)"] = errno(e)
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	m["clone3"] = errno(e)
	return m
}

// scaled is d multiplied by $FLINT_TEST_TIME_SCALE, as the suite's own
// deadlines are (sandboxtest.Scaled; the probe imports nothing of Flint).
func scaled(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv("FLINT_TEST_TIME_SCALE"), 64)
	if err != nil || f <= 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}
