// Package e2e drives a real `flint server` (the built binary, embedded NATS,
// real sandboxes) with real clients: aws-sdk-go-v2's Lambda client and
// Debian's AWS CLI.
package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/polltest"
)

// Built once in TestMain.
var (
	flintBin string // the flint binary under test
	initBin  string // cmd/flint-sandbox-init, from the same build, next to flintBin: the servers' default init
	goFnZip  []byte // the aws-lambda-go test function, zipped as bootstrap
	goFnZip2 []byte // the same function built with buildMark "v2"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flint-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "e2e: SKIP all: sandboxes need root (namespaces, cgroups)")
			return m.Run() // every test skips itself through requireRoot
		}
		flintBin = filepath.Join(dir, "flint")
		var serverFlags []string
		if raceEnabled { // go test -race: the server under test too
			serverFlags = append(serverFlags, "-race")
		}
		if err := gobuildtest.Compile("../cmd/flint", flintBin, serverFlags...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		initBin = filepath.Join(dir, "flint-sandbox-init")
		if err := gobuildtest.Compile("../cmd/flint-sandbox-init", initBin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for mark, dst := range map[string]*[]byte{"v1": &goFnZip, "v2": &goFnZip2} {
			bootstrap := filepath.Join(dir, "bootstrap-"+mark)
			if err := gobuildtest.Compile("./testdata/gofn", bootstrap, "-ldflags=-X main.buildMark="+mark); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			b, err := os.ReadFile(bootstrap)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			*dst = zipFiles(map[string]zipEntry{"bootstrap": {data: b, mode: 0o755}})
		}
		return m.Run()
	}()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the process sandbox driver uses namespaces and cgroups")
	}
}

type zipEntry struct {
	data []byte
	mode os.FileMode
}

// zipFiles builds a zip in memory.
func zipFiles(files map[string]zipEntry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, e := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// zipTestdata zips the files of testdata/<dir>.
func zipTestdata(t testing.TB, dir string) []byte {
	t.Helper()
	files := map[string]zipEntry{}
	root := filepath.Join("testdata", dir)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(root, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = zipEntry{data: b}
	}
	return zipFiles(files)
}

// flintServer is a `flint server` child process.
type flintServer struct {
	t      testing.TB
	cmd    *exec.Cmd
	data   string
	addr   string
	mu     sync.Mutex // guards logs
	logs   bytes.Buffer
	exited chan struct{}
}

var listenRE = regexp.MustCompile(`msg="flint server listening" addr=(\S+)`)

// startServer starts flint on a random port with its state in data and
// waits until /healthz answers.
func startServer(t testing.TB, data string, extra ...string) *flintServer {
	t.Helper()
	s, err := startServerErr(t, data, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServerErr is startServer for a server that may refuse to start: it
// returns the error (with the server's log) instead of failing the test.
func startServerErr(t testing.TB, data string, extra ...string) (*flintServer, error) {
	t.Helper()
	return startServerBin(t, flintBin, data, extra...)
}

// startServerBin is startServerErr with the flint binary at bin.
func startServerBin(t testing.TB, bin, data string, extra ...string) (*flintServer, error) {
	t.Helper()
	requireRoot(t)
	args := append([]string{"server", "--listen", "127.0.0.1:0", "--data", data, "--log-level", "debug"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &flintServer{t: t, cmd: cmd, data: data, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	// exec.Cmd.Wait would close the pipe as soon as the process exits,
	// losing its last lines (the error it exited with): reap the process,
	// let the scanner read to the end (bounded: a leftover child may hold
	// the pipe), then close.
	go func() {
		// cmd.Process.Wait does not set cmd.ProcessState: set it, for
		// the tests that check the exit code.
		st, _ := cmd.Process.Wait()
		cmd.ProcessState = st
		select {
		case <-scanned:
		case <-time.After(2 * time.Second):
		}
		stderr.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.stop()
		// A server killed by a crash test and not started again leaves its
		// sandboxes' cgroups behind: remove them the way a user would.
		if out, err := exec.Command(flintBin, "server", "--cleanup", "--data", data).CombinedOutput(); err != nil {
			t.Errorf("flint server --cleanup --data %s: %v\n%s", data, err, out)
		}
		// A server built with -race reports races on stderr and goes on.
		log := s.log()
		if i := strings.Index(log, "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("the server hit a data race:\n%s", log[i:])
		} else if t.Failed() {
			t.Logf("server log:\n%s", log)
		}
	})
	select {
	case s.addr = <-addrc:
	case <-s.exited:
		return nil, fmt.Errorf("flint server exited early:\n%s", s.log())
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("flint server did not start in 60s:\n%s", s.log())
	}
	polltest.Check(t, 30*time.Second, "the server to be healthy", func() error {
		resp, err := http.Get(s.url() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	return s, nil
}

func (s *flintServer) url() string { return "http://" + s.addr }

func (s *flintServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *flintServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(45 * time.Second):
		s.t.Errorf("flint server did not stop within 45s of SIGTERM")
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// kill ends the server with SIGKILL (a crash).
func (s *flintServer) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

func (s *flintServer) lambda() *lambda.Client {
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(s.url()),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""),
		RetryMaxAttempts: 1,
	})
}

// awsCLI runs Debian's AWS CLI against the server and returns stdout.
func (s *flintServer) awsCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	bin := "/usr/bin/aws" // Debian's awscli, installed by .ci/run
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Debian's awscli is not installed (apt-get install -y awscli; .ci/run does it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--endpoint-url", s.url(), "--region", "us-east-1", "--no-cli-pager", "--output", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDFLINT", "AWS_SECRET_ACCESS_KEY=secret", "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_MAX_ATTEMPTS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func readAll(r io.Reader) string { b, _ := io.ReadAll(r); return string(b) }

var _ = strings.TrimSpace

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
