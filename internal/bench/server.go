package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/flintdev/flint/internal/auth/keystore"
)

// childServer is a `flint server` the bench started as its own process,
// exactly as a user starts it: its own Go runtime, its own GOMAXPROCS,
// its default flags plus the ones the bench was told to add.
type childServer struct {
	cmd     *exec.Cmd
	dataDir string
	args    []string
	done    chan struct{} // closed when the process has exited
	logs    *logScanner
}

// flintBinary is the flint binary the bench starts as the server (and as
// its floor emulator): ServerBinary, else the bench's own.
func (c *Config) flintBinary() (string, error) {
	if c.ServerBinary != "" {
		return c.ServerBinary, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	return exe, nil
}

// startChild starts bin as `flint server` on a free loopback port with a
// fresh data dir and waits until its API answers (at most 60s). extra
// flags come after the bench's own (--data, --listen), so they win.
func startChild(ctx context.Context, cfg *Config, t *flintTarget) (*childServer, error) {
	bin, err := cfg.flintBinary()
	if err != nil {
		return nil, fmt.Errorf("start flint server: %w", err)
	}
	dataDir, err := os.MkdirTemp("", "flint-bench-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	args := []string{"server", "--data", dataDir, "--listen", "127.0.0.1:" + strconv.Itoa(port)}
	if cfg.Auth != "" {
		args = append(args, "--auth", string(cfg.Auth))
	}
	args = append(args, cfg.ServerArgs...)
	cmd := exec.Command(bin, args...)
	// Its own process group (a Ctrl-C reaches the bench, which stops the
	// server in order); SIGTERM if the bench dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start flint server %s: %w", bin, err)
	}
	c := &childServer{cmd: cmd, dataDir: dataDir, args: append([]string{bin}, args...), done: make(chan struct{}),
		logs: newLogScanner(cfg.Progress, cfg.logForward())}
	scanned := make(chan struct{})
	go func() { c.logs.scan(stderr); close(scanned) }()
	go func() { <-scanned; cmd.Wait(); close(c.done) }()
	t.base = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := c.waitReady(ctx, t); err != nil {
		c.stop()
		return nil, fmt.Errorf("start flint server: %w\n%s", err, c.logs.tail())
	}
	return c, nil
}

// waitReady polls until the server wrote its root key and its API answers
// a signed ListFunctions.
func (c *childServer) waitReady(ctx context.Context, t *flintTarget) error {
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-c.done:
			return fmt.Errorf("server exited: %v", c.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("not ready within 60s")
		}
		id, secret, err := keystore.ReadCredentials(filepath.Join(c.dataDir, "credentials"), keystore.Profile)
		if err == nil {
			t.creds = credentials.NewStaticCredentialsProvider(id, secret, "")
			hc.Transport = t.signer(http.DefaultTransport)
			if resp, err := hc.Get(t.base + "/2015-03-31/functions"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the server to exit (90s, then
// SIGKILL), then removes its data dir.
func (c *childServer) stop() error {
	var err error
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(90 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			err = errors.New("flint server did not stop within 90s (killed)")
		}
	}
	os.RemoveAll(c.dataDir)
	return err
}

// pid is the server's process id.
func (c *childServer) pid() int { return c.cmd.Process.Pid }

// logScanner reads the server's text log (log/slog's TextHandler, one
// record a line): it forwards records at or above a level to w, at most
// maxRepeats per message, counts the rest, and keeps the last lines for
// an error report.
type logScanner struct {
	w       io.Writer
	forward int // level rank (logRank) forwarded to w; past the top rank: none

	mu     sync.Mutex
	quiet  bool           // guarded by mu: the bench is tearing down; forward nothing more
	counts map[string]int // guarded by mu: forwarded-level records by message
	last   []string       // guarded by mu: the last lines
}

func newLogScanner(w io.Writer, forward int) *logScanner {
	return &logScanner{w: w, forward: forward, counts: map[string]int{}}
}

var (
	levelRE = regexp.MustCompile(`(?:^| )level=([A-Z]+)`)
	msgRE   = regexp.MustCompile(`(?:^| )msg=("(?:[^"\\]|\\.)*"|[^ ]*)`)
)

// logRank orders slog's level names; unknown ones rank as INFO.
func logRank(level string) int {
	switch strings.ToUpper(level) {
	case "DEBUG":
		return 0
	case "WARN":
		return 2
	case "ERROR":
		return 3
	}
	return 1
}

// parseLogLine returns the level and message of one TextHandler line
// (ok false for a line that is not one).
func parseLogLine(line string) (level, msg string, ok bool) {
	lm := levelRE.FindStringSubmatch(line)
	mm := msgRE.FindStringSubmatch(line)
	if lm == nil || mm == nil {
		return "", "", false
	}
	msg = mm[1]
	if u, err := strconv.Unquote(msg); err == nil {
		msg = u
	}
	return lm[1], msg, true
}

func (s *logScanner) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.line(sc.Text())
	}
	io.Copy(io.Discard, r) // a line too long: keep the pipe drained
}

func (s *logScanner) line(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = append(s.last, line)
	if len(s.last) > 40 {
		s.last = s.last[len(s.last)-40:]
	}
	level, msg, ok := parseLogLine(line)
	if !ok || logRank(level) < s.forward || s.quiet {
		return
	}
	s.counts[msg]++
	if s.counts[msg] <= maxRepeats {
		fmt.Fprintf(s.w, "server: %s\n", line)
	}
}

// silence stops forwarding: what the server logs while the bench deletes
// its functions and stops it (events of a deleted function dropped) is
// not news.
func (s *logScanner) silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = true
}

// repeated returns "N× message" for every message at the forwarded
// levels the server logged more than maxRepeats times.
func (s *logScanner) repeated() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for msg, n := range s.counts {
		if n > maxRepeats {
			out = append(out, fmt.Sprintf("server logged %d× %q (first %d shown on stderr)", n, msg, maxRepeats))
		}
	}
	sort.Strings(out)
	return out
}

// tail is the server's last log lines.
func (s *logScanner) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.last, "\n")
}

// binaryVersion describes the build of the Flint binary at path: its VCS
// revision (and whether the tree was modified) and Go version.
func binaryVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var rev, modified, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		case "vcs.time":
			when = s.Value
		}
	}
	v := bi.Main.Version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v = "commit " + rev
		if modified == "true" {
			v += " (modified)"
		}
		if when != "" {
			v += " " + when
		}
	}
	v += ", " + bi.GoVersion
	if f, err := os.Open(path); err == nil {
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			v += fmt.Sprintf(", binary sha256 %x", h.Sum(nil)[:6])
		}
		f.Close()
	}
	return v
}
