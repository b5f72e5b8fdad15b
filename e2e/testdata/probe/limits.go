package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// forkBomb starts up to n sleeping children; Count is how many started.
func forkBomb(r *Reply, n int) {
	// Once pids.max is reached no thread can start either, and a Go
	// program that then needs one (a P handed off while fork blocks) dies
	// ("failed to create new OS thread"). A sandbox pinned to one CPU runs
	// with GOMAXPROCS=1 and few threads: start some now, so that the
	// runtime finds them idle when it needs them, and the probe lives to
	// report.
	spareThreads(8)
	exe, _ := os.Executable()
	var procs []*os.Process
	var last error
	for i := 0; i < n; i++ {
		p, err := os.StartProcess(exe, []string{exe, "child-sleep"}, &os.ProcAttr{})
		if err != nil {
			last = err
			break
		}
		procs = append(procs, p)
	}
	r.Count = len(procs)
	r.Results["error"] = res(last)
	for _, p := range procs {
		p.Kill()
		p.Wait()
	}
}

// spareThreads makes the Go runtime start n OS threads and keep them idle:
// a goroutine locked to its thread holds it until it unlocks, and the
// thread then joins the runtime's idle list.
func spareThreads(n int) {
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread()
			started.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	started.Wait()
	release.Done()
}

// memBomb allocates and touches mb megabytes; it should die of OOM first.
func memBomb(mb int) {
	var keep [][]byte
	for i := 0; i < mb; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println("membomb survived", len(keep), "MB")
}

// fillTmp writes up to mb megabytes to path, then removes the file.
func fillTmp(r *Reply, path string, mb int) {
	f, err := os.Create(path)
	if err != nil {
		r.Results["error"] = res(err)
		return
	}
	chunk := make([]byte, 1<<20)
	written := 0
	var last error
	for i := 0; i < mb; i++ {
		n, err := f.Write(chunk)
		written += n
		if err != nil {
			last = err
			break
		}
	}
	if last == nil {
		last = f.Sync()
	}
	f.Close()
	os.Remove(path)
	r.Value = float64(written) / (1 << 20)
	r.Results["error"] = res(last)
}

// spin double-forks a detached spinner (it ignores every signal it can)
// and spins itself past any timeout.
func spin(nonce string) {
	exe, _ := os.Executable()
	p, err := os.StartProcess(exe, []string{exe, "child-spin", nonce}, &os.ProcAttr{})
	if err == nil {
		p.Wait() // the middle process exits at once: the spinner is orphaned
	}
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
	}
}

// exhaustFDs opens /dev/null until it fails; Count is how many it got.
func exhaustFDs(r *Reply) {
	var fds []int
	var last error
	for i := 0; i < 1<<20; i++ {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			last = err
			break
		}
		fds = append(fds, fd)
	}
	r.Count = len(fds)
	r.Results["error"] = res(last)
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// suid inspects and runs /var/task/suidprobe (zipped with the setuid bit).
func suid(r *Reply) {
	st, err := os.Stat("/var/task/suidprobe")
	if err != nil {
		r.Results["stat"] = res(err)
		return
	}
	r.Results["mode"] = st.Mode().String()
	var sys unix.Stat_t
	unix.Stat("/var/task/suidprobe", &sys)
	r.Results["owner"] = fmt.Sprintf("%d:%d", sys.Uid, sys.Gid)
	r.Results["perm"] = fmt.Sprintf("%04o", sys.Mode&0o7777)
	out, err := runOut("/var/task/suidprobe", "child-whoami")
	r.Results["run"] = res(err)
	r.Results["whoami"] = strings.TrimSpace(out)
}

func runOut(path string, args ...string) (string, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	p, err := os.StartProcess(path, append([]string{path}, args...), &os.ProcAttr{Files: []*os.File{nil, pw, pw}})
	pw.Close()
	if err != nil {
		pr.Close()
		return "", err
	}
	buf := make([]byte, 4096)
	n, _ := pr.Read(buf)
	pr.Close()
	p.Wait()
	return string(buf[:n]), nil
}

// cpu busy-loops on every CPU for ms of wall time; Value is the CPU time
// used divided by the wall time (1.0 = one full CPU).
func cpu(r *Reply, ms int) {
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	start := time.Now()
	done := make(chan struct{})
	for i := 0; i < runtime.NumCPU(); i++ {
		go func() {
			x := 0
			for {
				select {
				case <-done:
					return
				default:
					for j := 0; j < 100000; j++ {
						x += j
					}
				}
			}
		}()
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	close(done)
	wall := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	used := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	r.Value = used.Seconds() / wall.Seconds()
}

// masks reads and writes the /proc paths a container must hide or freeze.
func masks(r *Reply) {
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/kallsyms", "/proc/timer_list", "/proc/sched_debug", "/proc/kmsg", "/proc/sysrq-trigger"} {
		f, err := os.Open(p)
		if err != nil {
			r.Results["read "+p] = res(err)
			continue
		}
		buf := make([]byte, 64)
		n, err := f.Read(buf)
		f.Close()
		if n > 0 {
			r.Results["read "+p] = fmt.Sprintf("%d bytes", n)
		} else {
			r.Results["read "+p] = "empty " + res(err)
		}
	}
	for _, d := range []string{"/proc/acpi", "/proc/scsi", "/proc/driver", "/sys", "/sys/fs/cgroup"} {
		ents, err := os.ReadDir(d)
		if err == nil {
			r.Results["list "+d] = strconv.Itoa(len(ents)) + " entries"
		} else {
			r.Results["list "+d] = res(err)
		}
	}
	for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sys/kernel/core_pattern", "/proc/self/oom_score_adj"} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			val := "1"
			if strings.HasSuffix(p, "oom_score_adj") {
				val = "-1000"
			}
			_, err = f.WriteString(val)
			f.Close()
		}
		r.Results["write "+p] = res(err)
	}
}

// apiFlood opens up to n connections to the Runtime API (the one socket the
// host serves into the sandbox), holds them for ms, then closes them.
// Count is how many connected; Results["error"] is what stopped it.
func apiFlood(r *Reply, n, ms int) {
	addr := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	var conns []net.Conn
	var last error
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			last = err
			break
		}
		conns = append(conns, c)
	}
	r.Count = len(conns)
	r.Results["error"] = res(last)
	time.Sleep(time.Duration(ms) * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
}
