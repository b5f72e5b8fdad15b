package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/gobuildtest"
)

// The probe binary (testdata/probe), built once by the first test that
// needs it.
var (
	probeOnce sync.Once
	probeBin  []byte
	probeErr  error
)

// probeBinary builds testdata/probe (CGO_ENABLED=0) and returns it.
func probeBinary(t *testing.T) []byte {
	t.Helper()
	requireRoot(t)
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flint-probe-")
		if err != nil {
			probeErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "bootstrap")
		if err := gobuildtest.Compile("./testdata/probe", out); err != nil {
			probeErr = err
			return
		}
		probeBin, probeErr = os.ReadFile(out)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probeBin
}

// probeEvent mirrors testdata/probe's Event.
type probeEvent struct {
	Action  string   `json:"action"`
	Paths   []string `json:"paths,omitempty"`
	Write   []string `json:"write,omitempty"`
	Addrs   []string `json:"addrs,omitempty"`
	Pids    []int    `json:"pids,omitempty"`
	MaxPid  int      `json:"maxPid,omitempty"`
	Secret  string   `json:"secret,omitempty"`
	MB      int      `json:"mb,omitempty"`
	N       int      `json:"n,omitempty"`
	Ms      int      `json:"ms,omitempty"`
	Nonce   string   `json:"nonce,omitempty"`
	Content string   `json:"content,omitempty"`
}

// probeReply mirrors testdata/probe's Reply.
type probeReply struct {
	Instance string            `json:"instance"`
	Results  map[string]string `json:"results"`
	Found    []string          `json:"found"`
	Count    int               `json:"count"`
	Value    float64           `json:"value"`
	Env      []string          `json:"env"`
	InitFDs  []string          `json:"initFds"`
	FDs      []string          `json:"fds"`
	Status   map[string]string `json:"status"`
	Mounts   []string          `json:"mounts"`
}

// probeCall invokes fn (qualifier may be "") with ev and decodes the reply;
// a function error fails the test.
func probeCall(t *testing.T, c *lambda.Client, fn, qualifier string, ev probeEvent) probeReply {
	t.Helper()
	out := probeInvoke(t, c, fn, qualifier, ev)
	if out.FunctionError != nil {
		t.Fatalf("probe %s %s: function error %s: %s", fn, ev.Action, *out.FunctionError, out.Payload)
	}
	var r probeReply
	if err := json.Unmarshal(out.Payload, &r); err != nil {
		t.Fatalf("probe %s %s: payload %q: %v", fn, ev.Action, out.Payload, err)
	}
	return r
}

func probeInvoke(t *testing.T, c *lambda.Client, fn, qualifier string, ev probeEvent) *lambda.InvokeOutput {
	t.Helper()
	b, _ := json.Marshal(ev)
	in := &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: b}
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
	}
	out, err := c.Invoke(ctxT(t, 120*time.Second), in)
	if err != nil {
		t.Fatalf("Invoke %s (%s): %v", fn, ev.Action, err)
	}
	return out
}

// createZipFn creates a provided.al2023 function from zip.
func createZipFn(t *testing.T, c *lambda.Client, name string, zip []byte, memMB, timeoutS, tmpMB int32) {
	t.Helper()
	createGoFn(t, c, name, func(in *lambda.CreateFunctionInput) {
		in.Code = &types.FunctionCode{ZipFile: zip}
		in.MemorySize = aws.Int32(memMB)
		in.Timeout = aws.Int32(timeoutS)
		if tmpMB > 0 {
			in.EphemeralStorage = &types.EphemeralStorage{Size: aws.Int32(tmpMB)}
		}
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hostCanaries are things on the host no sandbox may touch.
type hostCanaries struct {
	file    string // a host file with secret content
	content string
	mtime   time.Time
	proc    *exec.Cmd // `sleep` in the host's pid namespace
	procErr chan error
	ln      net.Listener // on the host's 127.0.0.1
	unixLn  net.Listener // an abstract unix socket of the host's network namespace
	accepts atomic.Int64 // of both listeners
}

func newHostCanaries(t *testing.T) *hostCanaries {
	t.Helper()
	h := &hostCanaries{content: "FLINT-HOST-CANARY-" + randHex(16), procErr: make(chan error, 1)}
	h.file = filepath.Join(t.TempDir(), "canary.txt")
	if err := os.WriteFile(h.file, []byte(h.content), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(h.file)
	if err != nil {
		t.Fatal(err)
	}
	h.mtime = st.ModTime()
	h.proc = exec.Command("sleep", "3600")
	h.proc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.proc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.procErr <- h.proc.Wait() }()
	t.Cleanup(func() { h.proc.Process.Kill() })
	if h.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ln.Close() })
	if h.unixLn, err = net.Listen("unix", "@flint-host-canary-"+randHex(8)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.unixLn.Close() })
	for _, ln := range []net.Listener{h.ln, h.unixLn} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				h.accepts.Add(1)
				c.Close()
			}
		}()
	}
	return h
}

// check fails the test if any canary was touched.
func (h *hostCanaries) check(t *testing.T, after string) {
	t.Helper()
	b, err := os.ReadFile(h.file)
	if err != nil || string(b) != h.content {
		t.Errorf("after %s: host canary file changed: %q, %v", after, b, err)
	}
	if st, err := os.Stat(h.file); err != nil || !st.ModTime().Equal(h.mtime) || st.Mode().Perm() != 0o644 {
		t.Errorf("after %s: host canary file's mtime or mode changed: %v", after, err)
	}
	select {
	case err := <-h.procErr:
		h.procErr <- err
		t.Errorf("after %s: host canary process died: %v", after, err)
	default:
	}
	if err := h.proc.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("after %s: host canary process: %v", after, err)
	}
	if n := h.accepts.Load(); n != 0 {
		t.Errorf("after %s: host canary listener accepted %d connections", after, n)
	}
}

// serverPorts returns the TCP ports the server process listens on (its
// API and the embedded NATS).
func serverPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			_, port, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(port, 16, 16); err == nil {
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	return ports
}

// countFDs counts a process's open descriptors.
func countFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}

var sandboxIDRE = regexp.MustCompile(`sandbox=([0-9a-f]{32})\b`)

// sandboxIDs lists the sandbox ids a server log mentions.
func sandboxIDs(log string) map[string]bool {
	ids := map[string]bool{}
	for _, m := range sandboxIDRE.FindAllStringSubmatch(log, -1) {
		ids[m[1]] = true
	}
	return ids
}

// logCgroupDirs returns the cgroup directories of the sandboxes whose ids
// server log mentions, once each has all of them (at most 10s): on cgroup v1
// a claimed sandbox's prepared cgroups are renamed after it in the
// background, one hierarchy after the other, just after its claim.
func logCgroupDirs(log string) []string {
	want := 1
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		want = 3 // memory, pids, cpu
	}
	var dirs []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		dirs = dirs[:0]
		complete := true
		for id := range sandboxIDs(log) {
			d := cgroupDirs(id)
			complete = complete && len(d) >= want
			dirs = append(dirs, d...)
		}
		if complete || time.Now().After(deadline) {
			return dirs
		}
	}
}

// cgroupDirs returns the cgroup directories of sandbox id on the host (v1
// hierarchies or the v2 unified one).
func cgroupDirs(id string) []string {
	var dirs []string
	for _, pat := range []string{"/sys/fs/cgroup/*/flint*/" + id, "/sys/fs/cgroup/flint*/" + id} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	return dirs
}

// procsMatching returns host processes whose environment or command line
// contains one of marks, with their uid.
func procsMatching(marks ...string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join(p, f))
			if err != nil {
				continue
			}
			for _, m := range marks {
				if strings.Contains(string(b), m) {
					st, _ := os.ReadFile(filepath.Join(p, "status"))
					uid := ""
					for _, l := range strings.Split(string(st), "\n") {
						if strings.HasPrefix(l, "Uid:") {
							uid = strings.Join(strings.Fields(l)[1:], " ")
						}
					}
					out = append(out, fmt.Sprintf("%s (uid %s): %s", filepath.Base(p), uid, strings.ReplaceAll(string(b), "\x00", " ")))
					goto next
				}
			}
		}
	next:
	}
	return out
}

// mountsUnder lists the host mount points under dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// readCgroup reads a cgroup file, "" when absent.
func readCgroup(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// errorType extracts errorType from a function error payload.
func errorType(payload []byte) string {
	var d struct {
		ErrorType string `json:"errorType"`
	}
	json.Unmarshal(payload, &d)
	return d.ErrorType
}

// netnsOf returns the network namespace ("net:[inode]") of each host
// process whose environment names function fn.
func netnsOf(fn string) map[string]string {
	out := map[string]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(p, "environ"))
		if err != nil || !strings.Contains("\x00"+string(b), "\x00AWS_LAMBDA_FUNCTION_NAME="+fn+"\x00") {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(p, "ns", "net")); err == nil {
			out[filepath.Base(p)] = ns
		}
	}
	return out
}

// netnsHolders lists what still references network namespace ns: a
// process's namespace, an open descriptor or a (bind) mount.
func netnsHolders(ns string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if l, _ := os.Readlink(filepath.Join(p, "ns", "net")); l == ns {
			out = append(out, p+"/ns/net")
		}
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join(p, "fd", fd.Name())); l == ns {
				out = append(out, p+"/fd/"+fd.Name())
			}
		}
	}
	ino := strings.TrimSuffix(strings.TrimPrefix(ns, "net:["), "]")
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "nsfs") && strings.Contains(l, "net:["+ino+"]") {
			out = append(out, "mount: "+l)
		}
	}
	return out
}
