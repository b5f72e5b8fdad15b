package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

// setuidZip: a zip carrying a setuid-root binary loses the bit on
// extraction, and running it gives no privileges. Defence in depth: with
// the bit put back on the host (as if extraction had kept it), the nosuid
// mount and no_new_privs still give no privileges.
func (e *secSuite) setuidZip(t *testing.T) {
	c := e.c
	probe := e.probe
	zip := zipFiles(map[string]zipEntry{
		"bootstrap": {data: probe, mode: 0o755},
		"suidprobe": {data: probe, mode: os.ModeSetuid | os.ModeSetgid | 0o755},
	})
	createZipFn(t, c, "sec-suid", zip, 128, 30, 0)
	r := probeCall(t, c, "sec-suid", "", probeEvent{Action: "suid"})
	if r.Results["perm"] != "0755" {
		t.Errorf("extracted with mode %s (%s), want 0755: the setuid/setgid bits must go", r.Results["perm"], r.Results["mode"])
	}
	if r.Results["run"] != "ok" || r.Results["whoami"] != "993 990" {
		t.Errorf("running the setuid binary: %s, euid/egid %q, want 993 990", r.Results["run"], r.Results["whoami"])
	}
	secLog(t, "setuid binary in zip", fmt.Sprintf("extracted mode %s owner %s; ran as euid/egid %s", r.Results["perm"], r.Results["owner"], r.Results["whoami"]))

	found, _ := filepath.Glob(filepath.Join(e.data, "code", "*", "suidprobe"))
	if len(found) != 1 {
		t.Fatalf("the extracted suidprobe on the host: %v", found)
	}
	if err := os.Chmod(found[0], os.ModeSetuid|os.ModeSetgid|0o755); err != nil {
		t.Fatal(err)
	}
	r = probeCall(t, c, "sec-suid", "", probeEvent{Action: "suid"})
	if e.vm {
		// Driver-specific: the guest gets the code as an initramfs layer
		// of permission bits only; the bit set on the host never
		// reaches it.
		if r.Results["perm"] != "0755" || r.Results["whoami"] != "993 990" {
			t.Errorf("the guest sees mode %s, runs it as %q; want 0755, 993 990", r.Results["perm"], r.Results["whoami"])
		}
		secLog(t, "setuid-root bit forced on host", fmt.Sprintf("guest sees mode %s owner %s; ran as euid/egid %s", r.Results["perm"], r.Results["owner"], r.Results["whoami"]))
		e.innocent(t, "setuid")
		return
	}
	if r.Results["perm"] != "6755" || r.Results["owner"] != "0:0" {
		t.Fatalf("the sandbox does not see the setuid-root bit set on the host: mode %s owner %s", r.Results["perm"], r.Results["owner"])
	}
	if r.Results["run"] != "ok" || r.Results["whoami"] != "993 990" {
		t.Errorf("running a setuid-root binary: %s, euid/egid %q, want 993 990", r.Results["run"], r.Results["whoami"])
	}
	secLog(t, "setuid-root bit forced on host", fmt.Sprintf("sandbox sees mode %s owner %s; ran as euid/egid %s (nosuid, no_new_privs)", r.Results["perm"], r.Results["owner"], r.Results["whoami"]))
	e.innocent(t, "setuid")
}

// symlinkZip: a zip with a symlink out of the package is refused at CreateFunction with InvalidParameterValueException.
func (e *secSuite) symlinkZip(t *testing.T) {
	c := e.c
	probe := e.probe
	for _, target := range []string{"../../../../etc/shadow", "/etc/shadow"} {
		zip := zipFiles(map[string]zipEntry{
			"bootstrap": {data: probe, mode: 0o755},
			"evil":      {data: []byte(target), mode: os.ModeSymlink | 0o777},
		})
		_, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
			FunctionName: aws.String("sec-symlink"),
			Runtime:      types.RuntimeProvidedal2023,
			Handler:      aws.String("bootstrap"),
			Role:         aws.String("arn:aws:iam::000000000000:role/x"),
			Code:         &types.FunctionCode{ZipFile: zip},
		})
		var inv *types.InvalidParameterValueException
		if err == nil || !errors.As(err, &inv) || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("CreateFunction with a symlink to %s: %v, want InvalidParameterValueException about the symlink", target, err)
		}
		secLog(t, "symlink -> "+target, fmt.Sprintf("%v", err))
	}
	if _, err := c.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("sec-symlink")}); err == nil {
		t.Errorf("the function with the bad zip exists")
	}
	e.innocent(t, "symlink")
}

// forkBomb: pids.max (1024 tasks) stops a fork bomb with EAGAIN.
func (e *secSuite) forkBomb(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnBig, "", probeEvent{Action: "forkbomb", N: 3000})
	if r.Count >= 1024 || r.Results["error"] != "EAGAIN" {
		t.Errorf("fork bomb started %d processes, stopped by %s; want < 1024, EAGAIN", r.Count, r.Results["error"])
	}
	secLog(t, "fork bomb (3000)", fmt.Sprintf("started %d, then %s", r.Count, r.Results["error"]))
	e.innocent(t, "fork bomb")
}

// fds: RLIMIT_NOFILE (1024) stops descriptor exhaustion with EMFILE.
func (e *secSuite) fds(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "fds"})
	if r.Count > 1024 || r.Count < 900 || r.Results["error"] != "EMFILE" {
		t.Errorf("opened %d descriptors, stopped by %s; want about 1020, EMFILE", r.Count, r.Results["error"])
	}
	secLog(t, "fd exhaustion", fmt.Sprintf("opened %d, then %s", r.Count, r.Results["error"]))
	e.innocent(t, "fd exhaustion")
}

// runtimeAPIFlood: a sandbox holding hundreds of connections to its Runtime API costs the server at most the driver's per-sandbox connection limit in descriptors.
func (e *secSuite) runtimeAPIFlood(t *testing.T) {
	c := e.c
	serverPid := e.serverPid
	// The Runtime API is served by the host: each connection a sandbox
	// opens costs the server a descriptor and a goroutine.
	before := countFDs(serverPid)
	done := make(chan probeReply, 1)
	go func() { done <- probeCall(t, c, fnBig, "", probeEvent{Action: "apiflood", N: 1000, Ms: 3000}) }()
	peak := before
	var r probeReply
poll:
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		peak = max(peak, countFDs(serverPid))
		select {
		case r = <-done:
			break poll
		default:
		}
	}
	if peak-before > 100 {
		t.Errorf("a sandbox made the server open %d more descriptors (%d connections to the Runtime API)", peak-before, r.Count)
	}
	secLog(t, "Runtime API connection flood", fmt.Sprintf("sandbox connected %d times (then %s); server fds %d -> peak %d", r.Count, r.Results["error"], before, peak))
	e.innocent(t, "runtime API flood")
}

// fillTmp: /tmp holds EphemeralStorage (512 MB) and no more: ENOSPC.
func (e *secSuite) fillTmp(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnBig, "", probeEvent{Action: "fill-tmp", MB: 700})
	if r.Results["error"] != "ENOSPC" || r.Value > 512 || r.Value < 500 {
		t.Errorf("wrote %.1f MB to /tmp, stopped by %s; want 512 MB, ENOSPC", r.Value, r.Results["error"])
	}
	secLog(t, "fill /tmp (512 MB) with 700 MB", fmt.Sprintf("wrote %.1f MB, then %s", r.Value, r.Results["error"]))
	e.innocent(t, "fill tmp")
}

// fillDevShm: /dev/shm is bounded (64 MB): ENOSPC.
func (e *secSuite) fillDevShm(t *testing.T) {
	c := e.c
	r := probeCall(t, c, fnProbe, "", probeEvent{Action: "fill-tmp", Paths: []string{"/dev/shm/fill"}, MB: 400})
	if r.Results["error"] != "ENOSPC" || r.Value > 64 {
		t.Errorf("wrote %.1f MB to /dev/shm, stopped by %s; want at most 64 MB, ENOSPC", r.Value, r.Results["error"])
	}
	secLog(t, "fill /dev/shm with 400 MB", fmt.Sprintf("wrote %.1f MB, then %s", r.Value, r.Results["error"]))
	e.innocent(t, "fill /dev/shm")
}

// memoryBomb: allocating twice MemorySize OOM-kills the sandbox, the caller gets Runtime.OutOfMemory, and the function and the server keep working.
func (e *secSuite) memoryBomb(t *testing.T) {
	c := e.c
	out := probeInvoke(t, c, fnProbe, "", probeEvent{Action: "membomb", MB: 256})
	et := errorType(out.Payload)
	if aws.ToString(out.FunctionError) == "" || et != "Runtime.OutOfMemory" {
		t.Errorf("memory bomb: FunctionError %q payload %s, want Runtime.OutOfMemory", aws.ToString(out.FunctionError), out.Payload)
	}
	secLog(t, "memory bomb 256 MB at 128 MB", fmt.Sprintf("%s: %s", aws.ToString(out.FunctionError), out.Payload))
	e.innocent(t, "memory bomb")
	// The function itself recovers in a new sandbox.
	probeCall(t, c, fnProbe, "", probeEvent{Action: "identity"})
}

// cpu: CPU time is proportional to memory: 128 MB gets 128/1769 of a CPU.
func (e *secSuite) cpu(t *testing.T) {
	c := e.c
	if e.vm {
		e.vmmCPU(t)
		return
	}
	small := probeCall(t, c, fnProbe, "", probeEvent{Action: "cpu", Ms: 2000})
	big := probeCall(t, c, fnBig, "", probeEvent{Action: "cpu", Ms: 2000})
	if small.Value > 0.15 {
		t.Errorf("a 128 MB function used %.3f CPUs, want at most 128/1769 = 0.072", small.Value)
	}
	if big.Value < 3*small.Value {
		t.Errorf("a 1769 MB function used %.3f CPUs, a 128 MB one %.3f: not proportional", big.Value, small.Value)
	}
	secLog(t, "CPU share", fmt.Sprintf("128 MB: %.3f CPUs (want 0.072), 1769 MB: %.3f CPUs (want 1.0, host has 2 loaded cores)", small.Value, big.Value))
}

// spinPastTimeout: a function that double-forks a detached, signal-ignoring spinner and spins past its timeout gets Sandbox.Timedout, and no process of it survives on the host.
func (e *secSuite) spinPastTimeout(t *testing.T) {
	c := e.c
	nonce := "flint-spin-" + randHex(8)
	done := make(chan *lambda.InvokeOutput, 1)
	before := allVMMPids()
	go func() { done <- probeInvoke(t, c, fnSpin, "", probeEvent{Action: "spin", Nonce: nonce}) }()
	if e.vm {
		e.vmmSpin(t, nonce, before, done)
		return
	}
	// While it runs the detached spinner exists on the host.
	seen := ""
wait:
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, p := range procsMatching(nonce) {
			if strings.Contains(p, "child-spin2") {
				seen = p
				break wait
			}
		}
	}
	if seen == "" {
		t.Errorf("never saw the double-forked spinner on the host")
	} else if !strings.Contains(seen, "uid 993 993 993 993") {
		t.Errorf("the spinner does not run as uid 993: %s", seen)
	}
	out := <-done
	if et := errorType(out.Payload); et != "Sandbox.Timedout" {
		t.Errorf("spin: FunctionError %q payload %s, want Sandbox.Timedout", aws.ToString(out.FunctionError), out.Payload)
	}
	polltest.Check(t, 15*time.Second, "the timed-out sandbox's processes to die", func() error {
		if left := procsMatching(nonce); len(left) > 0 {
			return fmt.Errorf("processes of the timed-out sandbox survive: %v", left)
		}
		return nil
	})
	secLog(t, "double fork + spin past 2 s", fmt.Sprintf("%s; spinner seen on host (%s), gone after the timeout", errorType(out.Payload), strings.Fields(seen + " ?")[0]))
	e.innocent(t, "spin")
}

// noReuse: a sandbox serves one function version and configuration: another function, a configuration change and a published version each get a new sandbox, and /tmp dies with the sandbox.
func (e *secSuite) noReuse(t *testing.T) {
	c := e.c
	a := probeCall(t, c, fnProbe, "", probeEvent{Action: "tmp-write", Content: "before-update"})
	a2 := probeCall(t, c, fnProbe, "", probeEvent{Action: "tmp-read"})
	if a2.Instance != a.Instance || a2.Results["content"] != "before-update" {
		t.Fatalf("warm sandbox not reused or /tmp lost while warm: %+v then %+v", a, a2)
	}
	other := probeCall(t, c, fnVictim, "", probeEvent{Action: "tmp-read"})
	if other.Instance == a.Instance || other.Results["read"] == "ok" {
		t.Errorf("another function sees the sandbox or its /tmp: %+v", other)
	}
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String(fnProbe),
		Environment:  &types.Environment{Variables: map[string]string{"CHANGED": "1"}},
	}); err != nil {
		t.Fatal(err)
	}
	b := probeCall(t, c, fnProbe, "", probeEvent{Action: "tmp-read"})
	if b.Instance == a.Instance || b.Results["read"] == "ok" {
		t.Errorf("after a configuration change: instance %s (was %s), /tmp read %s %q", b.Instance, a.Instance, b.Results["read"], b.Results["content"])
	}
	probeCall(t, c, fnProbe, "", probeEvent{Action: "tmp-write", Content: "before-publish"})
	pv, err := c.PublishVersion(ctxT(t, 30*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String(fnProbe)})
	if err != nil {
		t.Fatal(err)
	}
	v := probeCall(t, c, fnProbe, aws.ToString(pv.Version), probeEvent{Action: "tmp-read"})
	if v.Instance == b.Instance || v.Results["read"] == "ok" {
		t.Errorf("version %s ran in $LATEST's sandbox or sees its /tmp: %+v", aws.ToString(pv.Version), v)
	}
	secLog(t, "sandbox reuse + /tmp", fmt.Sprintf("warm: same instance; other fn: new instance, /tmp %s; config change: new instance, /tmp %s; version %s: new instance, /tmp %s",
		other.Results["read"], b.Results["read"], aws.ToString(pv.Version), v.Results["read"]))
}
