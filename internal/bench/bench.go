// Package bench is Flint's benchmark suite, `flint bench`: it measures a
// Flint server (by default `flint server` with its default flags, started
// as its own process; or one at an endpoint; or, for profiling, one in
// this process) on warm invocations (also with multi-concurrency), cold
// starts, idle-sandbox density and asynchronous invocations, optionally
// side by side with AWS's Lambda Runtime Interface Emulator running the
// very same bootstrap, and reports the server's configuration with a
// table and JSON.
//
// Every timed request is made with a plain net/http client posting to
// Lambda's Invoke URL, one keep-alive connection per closed-loop client,
// for Flint and the peer alike, so the numbers are the servers' and not an
// SDK's; it is signed only when the server verifies signatures. The
// control plane (create, update, delete function) goes through
// aws-sdk-go-v2 and is never timed.
//
// Scenarios run in the order warm, cold, density, async (async last: its
// accept phase leaves a queue backlog behind).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/flintdev/flint/internal/auth"
)

// Scenario names.
const (
	ScenarioWarm    = "warm"
	ScenarioCold    = "cold"
	ScenarioDensity = "density"
	ScenarioAsync   = "async"
)

// Config configures one bench run.
type Config struct {
	// Endpoint is the Flint server to measure; "" starts one: by default
	// `flint server` as its own process (ServerBinary, temp data dir, a
	// free 127.0.0.1 port, the server's default flags plus ServerArgs;
	// needs root for sandboxes).
	Endpoint string
	// ServerBinary is the flint binary started as the server ("" for this
	// process's own executable).
	ServerBinary string
	// ServerArgs are extra `flint server` flags, after the bench's own
	// --data and --listen.
	ServerArgs []string
	// InProcess runs the server inside the bench's process (server.Run)
	// instead: client and server then share one Go runtime, but the
	// profiles (ProfileDir) see the server and the cold breakdown has the
	// driver's steps per creation. Not the default server users run.
	InProcess bool
	// MultiConcurrency is N for the multi-concurrency warm rows: a second
	// warm function with PerExecutionEnvironmentMaxConcurrency = N (0:
	// default 16; negative: skip them).
	MultiConcurrency int
	// Peer is "" or "rie": also measure warm and cold on AWS's Lambda
	// Runtime Interface Emulator running the same bootstrap.
	Peer string
	// Quick shrinks every count and duration left zero to a few-second
	// smoke run.
	Quick bool
	// SeqN is the number of sequential warm invocations.
	SeqN int
	// Duration is how long each warm concurrency level runs.
	Duration time.Duration
	// ColdN is the number of cold starts per target.
	ColdN int
	// DensityN is the number of idle sandboxes the density scenario creates.
	DensityN int
	// AsyncDuration is how long the async accept phase runs; AsyncStartN
	// is how many events the 202-to-start phase sends, one at a time.
	AsyncDuration time.Duration
	AsyncStartN   int
	// AsyncClients is how many closed-loop clients post events in the
	// accept phase of the target row (default 64: group commit stores
	// concurrent events with one fsync, so accepted/s grows with the
	// producers; a second phase always runs 16 for comparison).
	AsyncClients int
	// MemoryMB is the memory size of the warm, cold and async functions
	// (default 1024, as in issue 13's measurements: 16 of them fit the
	// default server's memory reservations on a 24 GiB host, 16 of 1769
	// MB do not). A server must offer 16 of them for c16.
	MemoryMB int32
	// SandboxInit is the server's --sandbox-init ("": the server's
	// default).
	SandboxInit string
	// Scenarios to run (default all).
	Scenarios []string
	// CacheDir keeps the built bench function and the installed emulator
	// (default $XDG_CACHE_HOME/flint-bench-cache or /tmp/flint-bench-cache).
	CacheDir string
	// ProfileDir, when set, receives a CPU, a mutex and a block profile
	// per Flint scenario (warm.pprof, warm.mutex.pprof, warm.block.pprof,
	// ...) of this process: with an in-process server that is the server
	// (and the bench client, which is small). The block and mutex profiles
	// are cumulative over the run.
	ProfileDir string
	// Auth is the in-process server's authentication mode ("" for its
	// default, dev on loopback); with auth.ModeRequired the bench signs
	// with the root key the server wrote.
	Auth auth.Mode
	// Credentials sign requests to Endpoint (nil: a placeholder key, which
	// only a server in --auth dev accepts). Flint's requests are signed
	// (SigV4) in either mode, as an AWS SDK signs them.
	Credentials aws.CredentialsProvider
	// Progress receives one line per step (default io.Discard).
	Progress io.Writer
	// Logger receives the in-process server's warnings and errors.
	Logger *slog.Logger
	// Command is recorded in the report.
	Command string

	runID string
}

// Validate fills defaults and reports whether c is usable.
func (c *Config) Validate() error {
	if c.Peer != "" && c.Peer != "rie" {
		return fmt.Errorf("bench: unknown peer %q (only \"rie\")", c.Peer)
	}
	def := func(v *int, quick, full int) {
		if *v <= 0 {
			*v = full
			if c.Quick {
				*v = quick
			}
		}
	}
	defD := func(v *time.Duration, quick, full time.Duration) {
		if *v <= 0 {
			*v = full
			if c.Quick {
				*v = quick
			}
		}
	}
	def(&c.SeqN, 30, 2000)
	defD(&c.Duration, 300*time.Millisecond, 5*time.Second)
	def(&c.ColdN, 3, 50)
	def(&c.DensityN, 5, 200)
	defD(&c.AsyncDuration, 300*time.Millisecond, 5*time.Second)
	def(&c.AsyncStartN, 5, 200)
	def(&c.AsyncClients, 64, 64)
	if c.MemoryMB <= 0 {
		c.MemoryMB = defaultMB
	}
	if c.MultiConcurrency == 0 {
		c.MultiConcurrency = 16
	}
	if c.SandboxInit != "" && !c.InProcess {
		c.ServerArgs = append(c.ServerArgs, "--sandbox-init", c.SandboxInit)
	}
	if c.ProfileDir != "" && !c.InProcess && c.Endpoint == "" {
		return errors.New("bench: --profile profiles this process: it needs --in-process (the server in the bench's own process)")
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = []string{ScenarioWarm, ScenarioCold, ScenarioDensity, ScenarioAsync}
	}
	for _, s := range c.Scenarios {
		switch s {
		case ScenarioWarm, ScenarioCold, ScenarioDensity, ScenarioAsync:
		default:
			return fmt.Errorf("bench: unknown scenario %q", s)
		}
	}
	if c.CacheDir == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			base = os.TempDir()
		}
		c.CacheDir = filepath.Join(base, "flint-bench-cache")
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if c.Endpoint == "" && os.Geteuid() != 0 {
		return errors.New("bench: the server the bench starts needs root (sandboxes use namespaces and cgroups); run as root or pass --endpoint")
	}
	c.runID = fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	return nil
}

// logForward is the rank (logRank) of the lowest server log level shown
// on the bench's stderr.
func (c *Config) logForward() int {
	switch l := minLevel(c.Logger.Handler()); {
	case l <= slog.LevelDebug:
		return 0
	case l <= slog.LevelInfo:
		return 1
	case l <= slog.LevelWarn:
		return 2
	}
	return 3
}

func (c *Config) fnName(scenario string) string { return "flint-bench-" + scenario + "-" + c.runID }

func (c *Config) has(s string) bool { return slices.Contains(c.Scenarios, s) }

func (c *Config) progress(format string, args ...any) {
	fmt.Fprintf(c.Progress, "bench: "+format+"\n", args...)
}

// Run runs the configured scenarios and returns the report. A scenario
// that fails is noted in the report and the run goes on; Run fails only
// when the targets cannot be set up at all.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Host: hostInfo()}
	rep.Host.Command = cfg.Command
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, err
	}
	cfg.progress("building the bench function")
	bootstrap, err := buildFunction(ctx, cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	zip, err := zipBootstrap(bootstrap)
	if err != nil {
		return nil, err
	}

	cfg.progress("starting flint")
	ft, err := startFlint(ctx, &cfg, zip)
	if err != nil {
		return nil, err
	}
	closeFlint := sync.OnceFunc(func() {
		if err := ft.close(context.WithoutCancel(ctx)); err != nil {
			cfg.Logger.Warn("stopping flint", "err", err)
		}
	})
	defer closeFlint()
	target := "flint at " + ft.base
	switch {
	case ft.inProcess:
		target = "flint (in-process server, " + ft.base + ")"
	case ft.child != nil:
		target = "flint server (child process, " + ft.base + ")"
	}
	rep.Server = ft.describe(ctx, &cfg)
	rep.Flint = &Result{Target: target, Client: clientName}
	if err := runFlint(ctx, &cfg, ft, rep.Flint); err != nil {
		return nil, err
	}
	if ft.capture != nil {
		rep.Flint.Notes = append(rep.Flint.Notes, ft.capture.repeated()...)
	}
	if ft.child != nil {
		rep.Flint.Notes = append(rep.Flint.Notes, ft.child.logs.repeated()...)
	}

	if cfg.Peer == "rie" {
		// The peer runs alone: a Flint server left running would still
		// be executing the async scenario's backlog (tens of thousands of
		// accepted events) on the same CPUs.
		closeFlint()
		rep.RIE = &Result{Target: "aws-lambda-rie (" + RIEModule + ")", Client: clientName}
		if err := runRIE(ctx, &cfg, bootstrap, rep.RIE); err != nil {
			rep.RIE.Notes = append(rep.RIE.Notes, "peer failed: "+err.Error())
		}
	}
	rep.Host.LoadAfter = loadavg()
	return rep, ctx.Err()
}

func runFlint(ctx context.Context, cfg *Config, ft *flintTarget, res *Result) error {
	profile := func(name string, f func() error) {
		if ctx.Err() != nil {
			return
		}
		cfg.progress("flint: %s", name)
		if cfg.ProfileDir != "" {
			if err := os.MkdirAll(cfg.ProfileDir, 0o755); err == nil {
				if pf, err := os.Create(filepath.Join(cfg.ProfileDir, name+".pprof")); err == nil {
					if pprof.StartCPUProfile(pf) == nil {
						defer func() { pprof.StopCPUProfile(); pf.Close() }()
					} else {
						pf.Close()
					}
				}
				// Where goroutines wait (locks, channels) matters as much
				// as CPU: creations that serialise show up here.
				runtime.SetMutexProfileFraction(10)
				runtime.SetBlockProfileRate(int(100 * time.Microsecond))
				defer func() {
					for _, kind := range []string{"mutex", "block"} {
						if pf, err := os.Create(filepath.Join(cfg.ProfileDir, name+"."+kind+".pprof")); err == nil {
							pprof.Lookup(kind).WriteTo(pf, 0)
							pf.Close()
						}
					}
					runtime.SetMutexProfileFraction(0)
					runtime.SetBlockProfileRate(0)
				}()
			}
		}
		if err := f(); err != nil {
			res.Notes = append(res.Notes, name+": "+err.Error())
		}
	}
	// flintWarm also counts the sandboxes the server holds after the top
	// level into *sandboxes.
	flintWarm := func(name string, sandboxes *int) warmTarget {
		return func(ctx context.Context, c int) (string, func() *http.Client, func(), error) {
			after := func() {
				if c == warmLevels[len(warmLevels)-1] {
					*sandboxes = ft.sandboxCount(ctx)
				}
			}
			return invokeURL(ft.base, name), func() *http.Client { return ft.httpClient(1) }, after, nil
		}
	}
	if cfg.has(ScenarioWarm) {
		profile(ScenarioWarm, func() error {
			name := cfg.fnName("warm")
			if err := ft.createFunction(ctx, name, cfg.MemoryMB); err != nil {
				return err
			}
			defer ft.deleteFunction(context.WithoutCancel(ctx), name) // frees its sandboxes for what follows
			var err error
			sandboxes := 0
			res.Warm, err = runWarm(ctx, cfg, flintWarm(name, &sandboxes), warmLevels)
			if res.Warm != nil {
				res.Warm.Sandboxes = sandboxes
				res.Warm.Mode = fmt.Sprintf("one function of %d MB; one invocation per sandbox at a time (Lambda's default)", cfg.MemoryMB)
			}
			return err
		})
	}
	if cfg.has(ScenarioWarm) && cfg.MultiConcurrency > 0 && ctx.Err() == nil {
		cfg.progress("flint: warm, multi-concurrency %d", cfg.MultiConcurrency)
		err := func() error {
			name := cfg.fnName("multi")
			defer ft.deleteFunction(context.WithoutCancel(ctx), name)
			why, err := ft.createMultiFunction(ctx, name, cfg.MemoryMB, cfg.MultiConcurrency)
			if err != nil {
				return err
			}
			if why != "" {
				res.MultiConcurrency = "multi-concurrency: " + why
				return nil
			}
			res.MultiConcurrency = fmt.Sprintf("PerExecutionEnvironmentMaxConcurrency=%d", cfg.MultiConcurrency)
			sandboxes := 0
			res.WarmMulti, err = runWarm(ctx, cfg, flintWarm(name, &sandboxes), warmLevels)
			if res.WarmMulti != nil {
				res.WarmMulti.Sandboxes = sandboxes
				res.WarmMulti.Mode = fmt.Sprintf("one function of %d MB with PerExecutionEnvironmentMaxConcurrency=%d (AWS_LAMBDA_MAX_CONCURRENCY=%[2]d): one sandbox serves up to %[2]d invocations at once", cfg.MemoryMB, cfg.MultiConcurrency)
			}
			return err
		}()
		if err != nil {
			res.Notes = append(res.Notes, "warm multi-concurrency: "+err.Error())
		}
	}
	if cfg.has(ScenarioCold) {
		profile(ScenarioCold, func() (err error) {
			res.Cold, err = runFlintCold(ctx, cfg, ft)
			return err
		})
	}
	if cfg.has(ScenarioDensity) {
		profile(ScenarioDensity, func() (err error) {
			res.Density, err = runDensity(ctx, cfg, ft)
			return err
		})
	}
	if cfg.has(ScenarioAsync) {
		profile(ScenarioAsync, func() (err error) {
			res.Async, err = runAsync(ctx, cfg, ft)
			return err
		})
	}
	return ctx.Err()
}

func runRIE(ctx context.Context, cfg *Config, bootstrap string, res *Result) error {
	cfg.progress("rie: installing the emulator if needed")
	bin, err := ensureRIE(ctx, cfg.CacheDir)
	if err != nil {
		return err
	}
	taskDir := filepath.Join(cfg.CacheDir, "task")
	if err := os.MkdirAll(taskDir, 0o755); err != nil {
		return err
	}
	if err := copyFile(bootstrap, filepath.Join(taskDir, "bootstrap")); err != nil {
		return err
	}
	r := &rie{bin: bin, bootstrap: bootstrap, taskDir: taskDir}
	if cfg.has(ScenarioWarm) {
		// Sequential and one client: both modes, the better is the
		// ratio's base; more clients: the concurrent mode only (the
		// default mode runs one invocation at a time).
		cfg.progress("rie: warm, default mode")
		def, err := runWarm(ctx, cfg, r.warmTarget(false), []int{1})
		if err != nil {
			res.Notes = append(res.Notes, "warm (default mode): "+err.Error())
		}
		cfg.progress("rie: warm, AWS_LAMBDA_MAX_CONCURRENCY=%d", rieMaxConcurrency)
		conc, err := runWarm(ctx, cfg, r.warmTarget(true), warmLevels)
		if err != nil {
			res.Notes = append(res.Notes, "warm (AWS_LAMBDA_MAX_CONCURRENCY): "+err.Error())
		}
		if def != nil {
			def.Mode = "default mode: one runtime, one invocation at a time (seq and c1 only)"
		}
		if conc != nil {
			conc.Mode = fmt.Sprintf("AWS_LAMBDA_MAX_CONCURRENCY=%d (2×clients when more): one runtime process with that many /next pollers (with exactly clients it answers Runtime.Unavailable when a request beats a poller back)", rieMaxConcurrency)
		}
		res.WarmModes = map[string]*Warm{}
		if def != nil {
			res.WarmModes[rieDefault] = def
		}
		if conc != nil {
			res.WarmModes[rieConcurrent] = conc
		}
		res.Warm = bestWarm(def, conc)
		// The floor: the same client and bootstrap against the least an
		// emulator can do (floor.go).
		bin, err := cfg.flintBinary()
		if err == nil {
			cfg.progress("floor: warm, a minimal Runtime API emulator")
			res.Floor, err = runWarm(ctx, cfg, floorTarget(bin, bootstrap), warmLevels)
		}
		if err != nil {
			res.Notes = append(res.Notes, "floor (minimal emulator): "+err.Error())
		}
	}
	if cfg.has(ScenarioCold) {
		cfg.progress("rie: cold")
		c, err := r.runCold(ctx, cfg.ColdN)
		res.Cold = c
		if err != nil {
			res.Notes = append(res.Notes, "cold: "+err.Error())
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// readStatusField reads one kB field of a /proc/<pid>/status file.
func readStatusField(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb); err != nil {
				return 0, fmt.Errorf("%s %s: %w", path, field, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}
