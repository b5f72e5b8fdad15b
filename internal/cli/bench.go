package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/auth"

	"github.com/flintdev/flint/internal/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	cfg := bench.Config{}
	var jsonPath, scenarios, logLevel string
	var useEndpoint bool
	var authMode string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark Flint (warm, cold, density, async), optionally against AWS's Runtime Interface Emulator",
		Long: `bench starts the default Flint server, "flint server" as its own process (this binary,
a temp data dir, a free 127.0.0.1 port, no other flags unless --server-flag; needs root),
or measures the one given with --endpoint, and prints its configuration and a table.
--peer rie runs the warm and cold scenarios against AWS's Lambda Runtime Interface
Emulator with the very same bootstrap and prints the ratios. See docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			if useEndpoint || cmd.Flags().Changed("endpoint") {
				cfg.Endpoint = g.endpoint
				cfg.Credentials = aws.NewCredentialsCache(aws.CredentialsProviderFunc(g.retrieve))
			}
			mode, err := auth.ParseMode(authMode)
			if err != nil {
				return fmt.Errorf("--auth: %w", err)
			}
			cfg.Auth = mode
			if scenarios != "" {
				cfg.Scenarios = strings.Split(scenarios, ",")
			}
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Command = "flint " + strings.Join(os.Args[1:], " ")
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			rep.PrintTable(cmd.OutOrStdout())
			if jsonPath != "" {
				return rep.WriteJSON(jsonPath)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&useEndpoint, "use-endpoint", false, "measure the server at --endpoint / $FLINT_ENDPOINT instead of starting one (implied by --endpoint)")
	f.StringVar(&cfg.Peer, "peer", "", `also run warm and cold against a peer: "rie"`)
	f.StringVar(&jsonPath, "json", "", "write the report as JSON to this file")
	f.StringVar(&cfg.SandboxInit, "sandbox-init", "", "the server's --sandbox-init (default: the server's own default)")
	f.StringArrayVar(&cfg.ServerArgs, "server-flag", nil, "an extra flag for the flint server the bench starts, e.g. --server-flag=--memory-overcommit=2 (repeatable)")
	f.StringVar(&cfg.ServerBinary, "server-binary", "", "the flint binary started as the server (default: this one)")
	f.BoolVar(&cfg.InProcess, "in-process", false, "run the server inside the bench's process (server.Run) instead of as flint server: needed for --profile; not the default server")
	f.IntVar(&cfg.MultiConcurrency, "multi-concurrency", 0, "N of the multi-concurrency warm rows (PerExecutionEnvironmentMaxConcurrency; default 16, -1 to skip)")
	f.BoolVar(&cfg.Quick, "quick", false, "a smoke run of a few seconds (numbers are not meaningful)")
	f.IntVar(&cfg.SeqN, "n", 0, "sequential warm invocations (default 2000; --quick 30)")
	f.DurationVar(&cfg.Duration, "duration", 0, "duration of each warm concurrency level (default 5s; --quick 300ms)")
	f.IntVar(&cfg.ColdN, "cold-n", 0, "cold starts per target (default 50; --quick 3)")
	f.IntVar(&cfg.DensityN, "density-n", 0, "idle sandboxes the density scenario creates (default 200; --quick 5)")
	f.DurationVar(&cfg.AsyncDuration, "async-duration", 0, "duration of the async accept phase (default 5s; --quick 300ms)")
	f.IntVar(&cfg.AsyncClients, "async-clients", 0, "closed-loop clients posting events in the async accept phase of the target row (default 64; a second phase runs 16)")
	f.IntVar(&cfg.AsyncStartN, "async-n", 0, "events timed from 202 to function start (default 200; --quick 5)")
	f.Int32Var(&cfg.MemoryMB, "memory", 0, "memory (MB) of the warm, cold and async functions (default 1024)")
	f.StringVar(&scenarios, "scenarios", "", "comma-separated subset of warm,cold,density,async (default all)")
	f.StringVar(&cfg.CacheDir, "cache", "", "where the bench function and the emulator are built/installed (default $TMPDIR/flint-bench-cache)")
	f.StringVar(&cfg.ProfileDir, "profile", "", "write CPU, mutex and block profiles per flint scenario into this dir (needs --in-process)")
	f.StringVar(&authMode, "auth", "", `authentication mode of the server the bench starts: "required" (the bench signs with the root key it wrote) or "dev" (default)`)
	f.StringVar(&logLevel, "log-level", "warn", "lowest level of the server's log records shown on stderr (the server itself logs at its default level)")
	cmd.AddCommand(newBenchFloorCmd())
	return cmd
}

// newBenchFloorCmd is `flint bench floor-emulator`, the minimal Runtime
// API emulator the bench starts as a process of its own (bench.ServeFloor).
func newBenchFloorCmd() *cobra.Command {
	var listen string
	var runtimes int
	cmd := &cobra.Command{
		Use:    "floor-emulator BOOTSTRAP",
		Short:  "Serve Invoke on --listen with --runtimes processes of BOOTSTRAP as the runtime, doing nothing else (the bench's floor)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return bench.ServeFloor(ctx, listen, args[0], runtimes)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9001", "address of the Invoke API")
	cmd.Flags().IntVar(&runtimes, "runtimes", 1, "runtime processes, each serving one invocation at a time")
	return cmd
}
