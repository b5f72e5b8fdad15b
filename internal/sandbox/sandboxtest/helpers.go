package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/sandbox"
)

// probePkg is the package of the program the suite runs in sandboxes.
const probePkg = "github.com/flintdev/flint/internal/sandbox/sandboxtest/probe"

// suite is the state shared by the subtests of one Run.
type suite struct {
	drv     sandbox.Driver
	codeDir string // holds the probe; world-readable
	seq     atomic.Int64
	prefix  string
	opts    Options
}

// buildProbe compiles the probe (statically) into a fresh world-readable
// directory that serves as every sandbox's CodeDir.
func buildProbe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gobuildtest.Build(t, probePkg, filepath.Join(dir, "probe"), "-trimpath")
	return dir
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomDigits is a string of n random decimal digits (for sleep markers).
func randomDigits(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

func (s *suite) newID() string {
	return s.prefix + "-" + strconv.FormatInt(s.seq.Add(1), 10)
}

// api is a sandbox's Runtime API under test: /next returns token, probes
// post their results to /test/report and /test/done; /test/hold blocks
// until its client goes away, counting how many are held at once.
type api struct {
	token   string
	calls   atomic.Int64
	reports chan []byte
	done    chan struct{}
	once    sync.Once

	holdMu  sync.Mutex // guards held and maxHeld
	held    int
	maxHeld int
}

func newAPI() *api {
	return &api{token: "token-" + randomHex(8), reports: make(chan []byte, 4), done: make(chan struct{})}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	switch r.URL.Path {
	case "/2018-06-01/runtime/invocation/next":
		io.WriteString(w, a.token)
	case "/test/report":
		b, _ := io.ReadAll(r.Body)
		select {
		case a.reports <- b:
		default:
		}
	case "/test/done":
		a.once.Do(func() { close(a.done) })
	case "/test/hold":
		a.holdMu.Lock()
		a.held++
		a.maxHeld = max(a.maxHeld, a.held)
		a.holdMu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		a.holdMu.Lock()
		a.held--
		a.holdMu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

// output is a Spec.Output that records everything; delay slows each Write
// down (to catch SyncOutput returning early).
type output struct {
	outputtest.Buffer // String is safe while writes go on
	delay             time.Duration
}

func (o *output) Write(p []byte) (int, error) {
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
	return o.Buffer.Write(p)
}

// baseEnv is the environment of every probe (plus the time scale, when
// set, for the probe's own deadlines).
func baseEnv() []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "FLINT_SANDBOXTEST=1"}
	if v := os.Getenv(TimeScaleEnv); v != "" {
		env = append(env, TimeScaleEnv+"="+v)
	}
	return env
}

// spec returns a Spec running the probe with args.
func (s *suite) spec(a *api, out io.Writer, args ...string) sandbox.Spec {
	return sandbox.Spec{
		ID:                 s.newID(),
		CodeDir:            s.codeDir,
		Command:            append([]string{"/var/task/probe"}, args...),
		Env:                baseEnv(),
		RuntimeAPI:         a,
		Output:             out,
		MemoryMB:           128,
		EphemeralStorageMB: specTmpMB,
	}
}

// specTmpMB is the EphemeralStorageMB of the suite's sandboxes.
const specTmpMB = 64

// create creates a sandbox and destroys it when the test ends.
func (s *suite) create(t *testing.T, spec sandbox.Spec) sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(20*time.Second))
	defer cancel()
	sb, err := s.drv.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.ID, err)
	}
	t.Cleanup(func() { destroy(t, sb) })
	return sb
}

func destroy(t *testing.T, sb sandbox.Sandbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Scaled(20*time.Second))
	defer cancel()
	if err := sb.Destroy(ctx); err != nil {
		t.Errorf("Destroy(%s): %v", sb.ID(), err)
	}
}

func waitDone(t *testing.T, sb sandbox.Sandbox, d time.Duration) {
	t.Helper()
	d = Scaled(d)
	select {
	case <-sb.Done():
	case <-time.After(d):
		t.Fatalf("sandbox %s still running after %v", sb.ID(), d)
	}
}

func waitReport(t *testing.T, sb sandbox.Sandbox, a *api, out *output) []byte {
	t.Helper()
	select {
	case b := <-a.reports:
		return b
	case <-sb.Done():
		select { // the probe exits right after reporting
		case b := <-a.reports:
			return b
		default:
		}
		t.Fatalf("sandbox %s ended before reporting: %v\noutput:\n%s", sb.ID(), sb.Err(), out)
	case <-time.After(Scaled(20 * time.Second)):
		t.Fatalf("sandbox %s: no report\noutput:\n%s", sb.ID(), out)
	}
	return nil
}

// TimeScaleEnv names the environment variable whose value (a number, 1 by
// default) multiplies the suite's deadlines, for machines that run it far
// slower than a host does, such as a guest under software emulation.
// Deadlines only bound waiting: no test asserts speed.
const TimeScaleEnv = "FLINT_TEST_TIME_SCALE"

// Scaled is d multiplied by $FLINT_TEST_TIME_SCALE.
func Scaled(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(TimeScaleEnv), 64)
	if err != nil || f <= 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}

// procsWith lists host pids whose command line contains marker.
func procsWith(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// openFDs counts this process's open descriptors.
func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// alive returns the pids of pids that still exist on the host.
func alive(pids []int) []int {
	var left []int
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			left = append(left, pid)
		}
	}
	return left
}
